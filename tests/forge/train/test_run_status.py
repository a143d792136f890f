"""One writer of run status: the runner writes status.json and events, runs.finalize() brings the store in line.
A runner killed (a real SIGKILL) at any stage leaves its run failed with the reason, never `running`."""

import json
import signal
import subprocess
import sys
import time

import pytest

from forge.train import runs
from forge.train.checkpoints import latest_checkpoint
from forge.train.events import read_events
from forge.train.spec import TrainSpec

PAIRS = [("remind me to call mom tomorrow at 5", "call mom | tomorrow at 5"),
         ("dont let me forget the dentist on friday", "dentist | friday"),
         ("ping me to water the plants tonight", "water the plants | tonight"),
         ("i need to pay rent on the 1st", "pay rent | the 1st")]


def make_run(store, config, run_id, base="/nonexistent-base", **spec):
    """A run folder with data and spec.json, recorded in the store as `created` (as runs.create_run leaves it)."""
    run_dir = config.workspace_path() / "runs" / run_id
    (run_dir / "data").mkdir(parents=True)
    lines = [json.dumps({"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]})
             for u, a in PAIRS]
    (run_dir / "data" / "train.jsonl").write_text("\n".join(lines * 2) + "\n")
    (run_dir / "data" / "val.jsonl").write_text(lines[0] + "\n")
    ts = TrainSpec(**{**dict(base_model=str(base), lora_r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                             batch_size=4, max_seq_len=64, lr_scheduler="constant", warmup_ratio=0.0,
                             eval_steps=100, save_steps=100, forgetting_check=False), **spec})
    ts.save(run_dir / "spec.json")
    store.create_run(run_id, str(run_dir), ts.model_dump(), {})
    return run_dir


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def until(check, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_finalize_marks_a_run_whose_runner_died_without_a_final_status_failed(store, config):
    run_dir = make_run(store, config, "r-died")
    (run_dir / "status.json").write_text(json.dumps({"status": "running", "pid": dead_pid(), "max_steps": 40}))
    final = runs.finalize(store, "r-died", run_dir)
    run = store.get_run("r-died")
    assert run["status"] == "failed" == final["status"]
    assert "died unseen during training" in run["meta"]["message"] and "runner.log" in run["meta"]["message"]

    # The launcher saw the exit code: it names the signal.
    final = runs.finalize(store, "r-died", run_dir, returncode=-signal.SIGKILL)
    assert "killed by SIGKILL during training" in store.get_run("r-died")["meta"]["message"]

    # Launched, then gone before its first word: failed too, once the launcher knows it exited.
    make_run(store, config, "r-silent")
    assert runs.finalize(store, "r-silent", config.workspace_path() / "runs" / "r-silent")["status"] == "created"
    assert store.get_run("r-silent")["status"] == "created"  # not launched yet, as far as anyone can tell
    runs.finalize(store, "r-silent", config.workspace_path() / "runs" / "r-silent", returncode=1)
    run = store.get_run("r-silent")
    assert run["status"] == "failed" and "exited with code 1 before it started" in run["meta"]["message"]


def test_a_final_status_is_copied_as_written(store, config):
    run_dir = make_run(store, config, "r-done")
    (run_dir / "status.json").write_text(json.dumps({"status": "stopped", "pid": 1, "time": 0, "step": 7,
                                                     "last_loss": 0.5}))
    runs.finalize(store, "r-done", run_dir, returncode=0)
    run = store.get_run("r-done")
    assert run["status"] == "stopped" and run["meta"]["step"] == 7 and "pid" not in run["meta"]


def test_the_runner_itself_never_writes_the_store(store, config):
    """Invalid data fails the run before the model loads; the store hears of it only through finalize."""
    run_dir = make_run(store, config, "r-bad")
    (run_dir / "data" / "train.jsonl").write_text("")
    proc = runs.launch(run_dir)
    assert proc.wait(timeout=120) == 1
    assert runs.run_status(run_dir)["status"] == "failed"
    assert store.get_run("r-bad")["status"] == "created"
    runs.finalize(store, "r-bad", run_dir, proc.returncode)
    run = store.get_run("r-bad")
    assert run["status"] == "failed" and "no training examples" in run["meta"]["message"]


@pytest.mark.slow
def test_sigkill_at_each_stage_leaves_the_run_failed_with_the_reason(store, config, base_model_dir, monkeypatch):
    # Setup: killed while loading the model. While it lives, finalize records it as starting.
    run_dir = make_run(store, config, "r-setup", base_model_dir, max_steps=50)
    proc = runs.launch(run_dir)
    until(lambda: runs.run_status(run_dir)["status"] == "starting")
    assert runs.finalize(store, "r-setup", run_dir)["status"] == "starting"
    assert store.get_run("r-setup")["status"] == "starting"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    runs.finalize(store, "r-setup", run_dir, proc.returncode)
    run = store.get_run("r-setup")
    assert run["status"] == "failed"
    assert "killed by SIGKILL while loading the model" in run["meta"]["message"]

    # Training: killed after its first checkpoint, and its launcher is gone too (no returncode): `forge runs`
    # settles it, and says where a resume would continue.
    run_dir = make_run(store, config, "r-train", base_model_dir, max_steps=200, save_steps=1)
    proc = runs.launch(run_dir)
    until(lambda: any(e["event"] == "checkpoint" for e in read_events(run_dir)[0]))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert runs.settle(store) == 1
    run = store.get_run("r-train")
    assert run["status"] == "failed" and "died unseen during training" in run["meta"]["message"]
    assert "resume continues from checkpoint-" in run["meta"]["message"]
    assert run["meta"]["max_steps"] == 200

    # Checkpoint save: killed between writing checkpoint-1 and its completion marker. The half checkpoint is not
    # offered for resume.
    run_dir = make_run(store, config, "r-ckpt", base_model_dir, max_steps=2, save_steps=1)
    monkeypatch.setenv("FORGE_TRAIN_FAULT", "checkpoint")
    proc = runs.launch(run_dir)
    runs.wait(proc, run_dir, poll=0.1)
    assert proc.returncode == -signal.SIGKILL
    runs.finalize(store, "r-ckpt", run_dir, proc.returncode)
    run = store.get_run("r-ckpt")
    assert run["status"] == "failed" and "killed by SIGKILL during training" in run["meta"]["message"]
    assert (run_dir / "checkpoints" / "checkpoint-1").is_dir() and latest_checkpoint(run_dir) is None
    assert "resume continues" not in run["meta"]["message"]
