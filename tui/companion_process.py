"""The TUI's handle on the companion: start/stop `forge serve` as a child process, or attach to one already
running on the configured port; health, admin swaps and chat over HTTP. No textual here; the Companion and
Models screens call it from worker threads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from forge.config import REPO_ROOT, Config


class CompanionProcess:
    def __init__(self, config: Config, port: int | None = None):
        self.config = config
        self.port = port or config.companion.port
        self.proc: subprocess.Popen | None = None
        self.log_path: Path = config.workspace_path() / "companion" / "serve.log"
        self.model: str | None = None

    @property
    def url(self) -> str:
        host = self.config.companion.host
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        return f"http://{host}:{self.port}"

    @property
    def owned(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_reason(self) -> str | None:
        """Why the child we started is gone (last line of its log), or None while it runs / if never started."""
        if self.proc is None or self.proc.poll() is None:
            return None
        lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()] \
            if self.log_path.exists() else []
        return (lines[-1] if lines else f"exited with status {self.proc.returncode}")[-300:]

    def health(self, timeout: float = 2.0) -> dict | None:
        try:
            return httpx.get(f"{self.url}/health", timeout=timeout).json()
        except (httpx.HTTPError, ValueError):
            return None

    def start(self, model: str | None = None) -> None:
        """Start `forge serve` for this workspace; returns at once (the screen polls health)."""
        if self.owned:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "companion.cli", "-w", str(self.config.workspace_path()), "serve",
               "--port", str(self.port), "--exit-with-parent"]
        if model:
            cmd += ["--model", model]
        self.model = model
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        with self.log_path.open("w") as log:
            # Same session as the UI: a terminal that hangs up (SSH dropped) takes the server down with it.
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         stdin=subprocess.DEVNULL)

    def stop(self, timeout: float = 15) -> None:
        if not self.owned:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def token(self) -> str | None:
        from companion.settings import admin_token

        return admin_token(self.config)

    def admin_model(self) -> dict | None:
        token = self.token()
        try:
            r = httpx.get(f"{self.url}/admin/model", headers={"Authorization": f"Bearer {token}"}, timeout=2)
            return r.json() if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def swap(self, model_id: str, timeout: float = 900) -> dict:
        """POST /admin/reload-model; returns the swap result or raises RuntimeError with the server's reason."""
        token = self.token()
        if not token:
            raise RuntimeError("no admin token: start the companion from forge, or set FORGE_ADMIN_TOKEN")
        try:
            r = httpx.post(f"{self.url}/admin/reload-model", json={"model_id": model_id},
                           headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
        except httpx.HTTPError as e:
            raise RuntimeError(f"companion not reachable at {self.url}: {e}") from None
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code != 200:
            raise RuntimeError((body.get("error") or {}).get("message") or f"HTTP {r.status_code}")
        return body

    def wait_healthy(self, timeout: float = 120) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            h = self.health()
            if h and h.get("status") == "healthy":
                return h
            if self.proc is not None and self.proc.poll() is not None:
                return None
            time.sleep(0.25)
        return None
