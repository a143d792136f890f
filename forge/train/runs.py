"""Run control from the outside: create a run directory from the approved examples, launch the runner as its
own process (or through `accelerate launch` for several processes), stop it with a signal, resume it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from forge import child_env
from forge.config import Config
from forge.dataset import export_dataset
from forge.store import Store, StoreError
from forge.train.events import read_events
from forge.train.spec import TrainSpec


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S-") + os.urandom(2).hex()


def create_run(store: Store, config: Config, spec: TrainSpec, dataset_dir: Path | None = None) -> tuple[str, Path]:
    """A run directory with spec.json and data/ (exported now from the approved examples, or copied from an
    exported dataset folder), recorded in the store."""
    run_id = new_run_id()
    run_dir = config.workspace_path() / "runs" / run_id
    (run_dir / "data").mkdir(parents=True)
    if dataset_dir:
        for name in ("train", "val", "test"):
            src = Path(dataset_dir) / f"{name}.jsonl"
            if src.exists():
                (run_dir / "data" / f"{name}.jsonl").write_bytes(src.read_bytes())
        manifest = Path(dataset_dir) / "manifest.json"
        report = json.loads(manifest.read_text()) if manifest.exists() else {}
    else:
        try:
            report = export_dataset(store, run_dir / "data", config, fmt="chat")
        except Exception:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)  # no half-made run left behind
            raise
    spec.save(run_dir / "spec.json")
    store.create_run(run_id, str(run_dir), spec.model_dump(),
                     {"dataset_hash": report.get("dataset_hash"), "train": report.get("train"),
                      "val": report.get("val"), "test": report.get("test")})
    return run_id, run_dir


def runner_command(run_dir: Path, spec: TrainSpec, resume: bool = False) -> list[str]:
    """The command that runs the recipe: plain python for one process, `accelerate launch` for more."""
    tail = ["-m", "forge.train.runner", str(run_dir)] + (["--resume"] if resume else [])
    if spec.num_processes <= 1:
        return [sys.executable, *tail]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(spec.num_processes)]
    if spec.accelerate_config:
        cmd += ["--config_file", spec.accelerate_config]
    else:
        cmd += ["--multi_gpu"]
    return cmd + tail


def launch(run_dir: Path, resume: bool = False, quiet: bool = True) -> subprocess.Popen:
    spec = TrainSpec.load(run_dir / "spec.json")
    log = open(run_dir / "runner.log", "ab")
    env = child_env(HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"), TOKENIZERS_PARALLELISM="false",
                    PYTHONUNBUFFERED="1")
    return subprocess.Popen(runner_command(run_dir, spec, resume), stdout=log if quiet else None,
                            stderr=subprocess.STDOUT if quiet else None, env=env, start_new_session=True)


def stop(proc_or_pid, sig: int = signal.SIGINT) -> None:
    """Ask the runner to save a checkpoint and stop (it finishes the current step first)."""
    pid = proc_or_pid.pid if hasattr(proc_or_pid, "pid") else int(proc_or_pid)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def run_status(run_dir: Path) -> dict:
    path = Path(run_dir) / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"status": "created"}


def run_dir_of(store: Store, run_id: str) -> Path:
    run = store.get_run(run_id)
    path = Path(run["run_dir"])
    if not path.is_dir():
        raise StoreError(f"run {run_id}: its folder {path} is gone")
    return path


def wait(proc: subprocess.Popen, run_dir: Path, on_event=None, poll: float = 0.5) -> dict:
    """Follow the run's events until the process exits; returns the final status."""
    offset = 0
    while True:
        done = proc.poll() is not None
        events, offset = read_events(run_dir, offset)
        for e in events:
            if on_event:
                on_event(e)
        if done:
            break
        time.sleep(poll)
    status = run_status(run_dir)
    if status.get("status") in ("running", "starting", "created"):
        status = {"status": "failed", "message": f"runner exited with code {proc.returncode} "
                                                 f"(see {run_dir / 'runner.log'})"}
    return status
