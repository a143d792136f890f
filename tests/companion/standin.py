"""Helpers for tests that run the companion on the scripted stand-in worker (tests/companion/standin_worker.py):
scripts as "model files", the stand-in's event log, its processes, and a real uvicorn server in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path

import psutil

STANDIN = "tests.companion.standin_worker"
TOKEN = "standin-admin-token-0123456789"


def script(folder: Path, model_id: str, **spec) -> dict:
    """A stand-in "model": its script file, and the registry-like record the pool takes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model_id}.json"
    path.write_text(json.dumps(spec))
    return {"id": model_id, "name": model_id, "path": str(path)}


def events(model: dict) -> list[str]:
    log = Path(model["path"] + ".log")
    return log.read_text().splitlines() if log.exists() else []


def launches(model: dict) -> int:
    return sum(1 for e in events(model) if e.startswith("launch "))


def open_gate(model: dict, name: str) -> None:
    Path(model["path"]).with_name(name).touch()


def standin_pids() -> set[int]:
    """Live stand-in worker processes started (directly or not) by this test process."""
    pids = set()
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.status() != psutil.STATUS_ZOMBIE and STANDIN in " ".join(p.cmdline()):
                pids.add(p.pid)
    return pids


async def until(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s")


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s")


def settle_to_one_worker(expected_pid: int, timeout: float = 15.0) -> None:
    """Retired workers drain and exit; then exactly the serving worker is left. Fails naming the extra ones."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if standin_pids() == {expected_pid}:
            return
        time.sleep(0.05)
    raise AssertionError(f"worker processes {sorted(standin_pids())}, expected only the serving one {expected_pid}")


@contextlib.contextmanager
def running(app):
    """`app` served by a real uvicorn on a free loopback port, in a thread of this process (so its worker
    processes are this test's children and its pool can be looked at). Yields the base URL."""
    import uvicorn

    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 60, "server start")
        if not server.started:
            raise RuntimeError("the in-process companion did not start (see the log above)")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def standin_app(workspace: Path, serve: dict, *others: dict, **companion):
    """create_app() over a workspace whose registry holds the stand-in scripts, serving `serve`."""
    from companion.app import create_app
    from companion.settings import Settings
    from forge.config import Config
    from forge.store import Store
    from tests.conftest import add_model

    config = Config(workspace=str(workspace), companion={"request_timeout_s": 20, "load_timeout_s": 20,
                                                          "drain_timeout_s": 10, "queue_timeout_s": 20,
                                                          **companion})
    store = Store.for_workspace(workspace)
    try:
        for m in (serve, *others):
            if store.get_model(m["id"], missing_ok=True) is None:
                add_model(store, config, m["id"], Path(m["path"]), "f16")
    finally:
        store.close()
    return create_app(Settings(config=config, admin_token=TOKEN, model=serve["id"], worker_module=STANDIN))
