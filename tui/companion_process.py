"""The TUI's handle on the companion: start/stop `forge serve` as a child process, or attach to one already
running on the configured port; health, admin swaps and chat over HTTP. No textual here; the Companion and
Models screens call it from worker threads."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from companion.client import companion_url, request_adapter, request_swap
from forge import child_env
from forge.config import REPO_ROOT, Config


class CompanionProcess:
    def __init__(self, config: Config):
        self.config = config
        self.proc: subprocess.Popen | None = None
        self.log_path: Path = config.workspace_path() / "companion" / "serve.log"

    @property
    def url(self) -> str:
        return companion_url(self.config)

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
               "--port", str(self.config.companion.port), "--exit-with-parent"]
        if model:
            cmd += ["--model", model]
        with self.log_path.open("w") as log:
            # Same session as the UI: a terminal that hangs up (SSH dropped) takes the server down with it.
            self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
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

    def swap(self, model_id: str, timeout: float = 900) -> dict:
        """POST /admin/reload-model; the swap result, or SwapError with the reason in one line."""
        return request_swap(self.config, model_id, self.url, timeout)

    def add_adapter(self, adapter_id: str, timeout: float = 300) -> dict:
        """POST /admin/adapters: the adapter loads on the served base; the result, or AdminRequestError."""
        return request_adapter(self.config, adapter_id, self.url, timeout)

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
