"""One real companion per test session: `forge serve` in a child process on a free loopback port, serving the
bundled SmolLM2 (`base`), with a second real GGUF (`alt`: the same model requantized to Q8_0) to swap to."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port

TOKEN = "test-admin-token-0123456789"


@dataclass
class Companion:
    url: str
    proc: subprocess.Popen
    config_path: Path
    workspace: Path
    log: Path

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def admin(self, method: str, path: str, token: str | None = TOKEN, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=300, **kw)

    def swap(self, model_id: str) -> httpx.Response:
        return self.admin("POST", "/admin/reload-model", json={"model_id": model_id})

    def openai(self, **kw):
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", **kw)


def start_server(cfg_path: Path, ws: Path, *extra: str, env: dict | None = None) -> Companion:
    port = free_port()
    log = ws / f"serve-{port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "tui.launch", "--config", str(cfg_path), "serve", "--port",
                             str(port), *extra], cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "FORGE_ADMIN_TOKEN": TOKEN,
                                 "FORGE_WORKER_FAULT": "crash-smoke:crashy", **(env or {})})
    c = Companion(f"http://127.0.0.1:{port}", proc, cfg_path, ws, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"forge serve exited: {log.read_text()[-2000:]}")
        try:
            if c.health()["status"] == "healthy":
                return c
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"forge serve did not come up: {log.read_text()[-2000:]}")


def stop_server(c: Companion) -> None:
    c.proc.terminate()
    try:
        c.proc.wait(30)
    except subprocess.TimeoutExpired:
        c.proc.kill()


@pytest.fixture(scope="session")
def companion(companion_ws):
    c = start_server(*companion_ws)
    yield c
    stop_server(c)


@pytest.fixture
def on_base(companion):
    """The session server, serving `base` (swapped back if a test left it on another model)."""
    if companion.health()["model"] != "base":
        assert companion.swap("base").status_code == 200
    return companion
