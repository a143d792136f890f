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
from typing import Callable

from forge import child_env
from forge.config import Config
from forge.data.dataset import DatasetError, export_dataset
from forge.store import Store, StoreError
from forge.train.events import read_events
from forge.train.spec import SpecError, TrainSpec


def run_kind(spec: dict) -> dict:
    """What a run trained, for the run lists (`forge runs`, the Train screen's history): its method, the run it
    started from and its base, by registry id or the folder's name."""
    base = str(spec.get("base_model") or "")
    return {"method": spec.get("method") or "sft", "from_run": spec.get("from_run"),
            "base": Path(base).name if ("/" in base or "\\" in base) else base}


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("run-%Y%m%d-%H%M%S-") + os.urandom(2).hex()


class TruncationRefused(SpecError):
    """An explicit max_seq_len would truncate too many examples and the caller did not confirm it."""


def measure_lengths(spec: TrainSpec, run_dir: Path, workspace: Path) -> tuple[TrainSpec, dict | None]:
    """The length report of the run's training split (forge/train/lengths.py), and the spec with an "auto"
    max_seq_len resolved and its reason recorded. Without a tokenizer the report is None and "auto" is left for
    the runner to resolve."""
    from forge.train.lengths import LengthError, plan_run_data

    try:
        report = plan_run_data(spec, run_dir / "data", workspace)
    except LengthError as e:
        return spec, {"error": str(e)}
    update = {"max_seq_len": report["max_seq_len"], "max_seq_len_reason": report["reason"],
              "batch_size": report.get("batch_size", spec.batch_size),
              "grad_accum": report.get("grad_accum", spec.grad_accum)}
    return spec.model_copy(update=update), report


def split_of(data_dir: Path) -> dict[int, str] | None:
    """Example id → split, as the run's SFT export (its manifest) split them; None when there is none."""
    manifest = data_dir / "manifest.json"
    if not manifest.exists():
        return None
    ids = json.loads(manifest.read_text()).get("ids") or {}
    return {i: name for name, members in ids.items() for i in members} or None


def preference_data(store: Store, config: Config, spec: TrainSpec, run_dir: Path,
                    dataset_dir: Path | None = None) -> TrainSpec:
    """A dpo/kto run's records in run_dir/data/preferences: copied from dataset_dir/preferences when that holds an
    export of the same kind, else exported now from the store (export_preferences: the split SFT's export gives,
    so a held-out note stays held out). The spec comes back with preference_data (counts by split and source) and
    with from_run checked. Raises with a one-line reason, leaving no run folder, when there is nothing to train on."""
    import shutil

    from forge.data.preferences import export_preferences

    out = run_dir / "data" / "preferences"
    try:
        if spec.from_run:
            adapter = run_dir.parent / spec.from_run / "adapter" / "adapter_config.json"
            if not adapter.exists():
                raise SpecError(f"from_run {spec.from_run}: no finished adapter in {adapter.parent} (pick a completed "
                                f"or stopped run: forge runs)")
        given = Path(dataset_dir) / "preferences" if dataset_dir else None
        manifest_path = given / "manifest.json" if given else None
        kind = "kto" if spec.method == "kto" else "dpo"
        if manifest_path and manifest_path.exists() and json.loads(manifest_path.read_text()).get("kind") == kind:
            shutil.copytree(given, out)
            report = json.loads(manifest_path.read_text())
        else:
            report = export_preferences(store, out, config, kind=kind, split_of=split_of(run_dir / "data"))
    except Exception:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    counts = {k: report.get(k) for k in ("train", "val", "test", "sources", "dataset_hash")}
    return spec.model_copy(update={"preference_data": counts})


def create_run(store: Store, config: Config, spec: TrainSpec, dataset_dir: Path | None = None,
               check_lengths: Callable[[dict], bool] | None = None) -> tuple[str, Path]:
    """A run directory with spec.json and data/ (exported now from the approved examples, notes held out whole as
    `forge dataset export` does, or copied from an exported dataset folder), recorded in the store. Its
    data/test.jsonl is the run's held-out set (`forge eval MODEL --run RUN`).

    The training split's lengths are measured first (lengths.json in the run folder): an "auto" max_seq_len
    becomes a number, recorded with its reason in spec.json. `check_lengths(report)` sees the report before
    anything is recorded; when it returns False the folder is removed and TruncationRefused is raised."""
    from forge.train.spec import check_trackers

    check_trackers(spec.report_to)
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
        if manifest.exists():  # the run's data says how it was split (group_by, notes per split) either way
            (run_dir / "data" / "manifest.json").write_bytes(manifest.read_bytes())
    else:
        try:
            report = export_dataset(store, run_dir / "data", config, fmt="chat")
        except DatasetError:
            if spec.method == "sft":
                import shutil

                shutil.rmtree(run_dir, ignore_errors=True)  # no half-made run left behind
                raise
            report = {}  # preference training from votes alone: no approved examples to hold out
        except Exception:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    if spec.method != "sft":
        spec = preference_data(store, config, spec, run_dir, dataset_dir)
    spec, lengths = measure_lengths(spec, run_dir, config.workspace_path()) if spec.method == "sft" else (spec, None)
    if lengths is not None:
        (run_dir / "lengths.json").write_text(json.dumps(lengths, indent=2) + "\n")
    if check_lengths is not None and lengths is not None and "error" not in lengths and not check_lengths(lengths):
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        from forge.train.lengths import refusal

        raise TruncationRefused(refusal(lengths))
    spec.save(run_dir / "spec.json")
    summary = {k: lengths.get(k) for k in ("max_seq_len", "reason", "p50", "p98", "max", "over", "cut", "dropped",
                                           "policy", "error")} if lengths else None
    store.create_run(run_id, str(run_dir), spec.model_dump(),
                     {"dataset_hash": report.get("dataset_hash"), "train": report.get("train"),
                      "val": report.get("val"), "test": report.get("test"), "lengths": summary})
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


FINAL = ("completed", "stopped", "failed")
STAGES = {"created": "before it started", "starting": "while loading the model and data",
          "running": "during training", "stopping": "while saving its last checkpoint"}


def _runner_alive(pid) -> bool:
    """Whether `pid` is a live forge runner (not a zombie, not another program that got its pid since)."""
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{int(pid)}/cmdline")
    if cmdline.parent.exists():
        try:
            return b"forge.train.runner" in cmdline.read_bytes()  # a zombie's is empty
        except OSError:
            return False
    return True


def final_status(run_dir: Path, returncode: int | None = None) -> dict:
    """status.json, or, when the runner ended without writing a final status there (killed, crashed), `failed` with
    the reason, the stage and the checkpoint a resume would continue from. `returncode` is the runner's exit code
    when the caller launched it; without it the pid in status.json tells whether the runner still runs."""
    run_dir = Path(run_dir)
    status = run_status(run_dir)
    state = status.get("status")
    if state in FINAL:
        return status
    if returncode is None and (status.get("pid") is None or _runner_alive(status["pid"])):
        return status  # still going, or never launched: nothing is known to have gone wrong
    if returncode is None:
        how = "died unseen"
    elif returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with code {returncode}"
    message = f"the runner {how} {STAGES.get(state, f'while {state}')} without a final status"
    from forge.train.checkpoints import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        message += f"; resume continues from {ckpt.name}"
    message += f" (see {run_dir / 'runner.log'})"
    extra = {k: v for k, v in status.items() if k not in ("status", "time", "pid", "message")}
    return {**extra, "status": "failed", "message": message}


def finalize(store: Store, run_id: str, run_dir: Path, returncode: int | None = None) -> dict:
    """Bring the store's record of the run in line with its status.json and return that status: the one place the
    store learns a run's status (the runner only writes status.json and events). Call it once the runner has
    exited, with its exit code: a runner that died without a final status leaves the run `failed` with the reason,
    never `running`. Called without `returncode` for a run some other process launched, it records the current
    status while the runner lives and `failed` once it is gone."""
    status = final_status(run_dir, returncode)
    if status.get("status") != "created":
        store.update_run(run_id, status["status"],
                         {k: v for k, v in status.items() if k not in ("status", "time", "pid")})
    return status


def settle(store: Store) -> int:
    """finalize() every run the store does not hold as ended (one whose launcher died, or another process's);
    how many there were. `forge runs` calls it, so a run is never shown `running` after its runner is gone."""
    unsettled = [r for r in store.runs() if r["status"] not in FINAL and Path(r["run_dir"]).is_dir()]
    for r in unsettled:
        finalize(store, r["id"], Path(r["run_dir"]))
    return len(unsettled)


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
    return final_status(run_dir, proc.returncode)
