"""Real training on the CPU with the bundled SmolLM2-135M: tiny, but every path a user hits."""

import json
import signal
import time

import pytest

from forge.train import runs
from forge.train.checkpoints import latest_checkpoint
from forge.train.events import DiskLogger, read_events
from forge.train.spec import SpecError, TrainSpec, pick_backend

EXAMPLES = [("remind me to call mom tomorrow at 5", "call mom | tomorrow at 5"),
            ("dont let me forget the dentist on friday", "dentist | friday"),
            ("ping me to water the plants tonight", "water the plants | tonight"),
            ("i need to pay rent on the 1st", "pay rent | the 1st")]


def make_run(tmp_path, base, **spec):
    run_dir = tmp_path / "ws" / "runs" / "r1"
    (run_dir / "data").mkdir(parents=True)
    lines = [json.dumps({"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]})
             for u, a in EXAMPLES]
    (run_dir / "data" / "train.jsonl").write_text("\n".join(lines * 2) + "\n")
    (run_dir / "data" / "val.jsonl").write_text(lines[0] + "\n")
    defaults = dict(base_model=str(base), lora_r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                    batch_size=4, max_seq_len=64, learning_rate=3e-3, lr_scheduler="constant", warmup_ratio=0.0,
                    eval_steps=4, save_steps=2, forgetting_check=False)  # tests/forge/train/test_lengths.py runs it
    TrainSpec(**{**defaults, **spec}).save(run_dir / "spec.json")
    return run_dir


def events(run_dir, kind=None):
    evs = read_events(run_dir)[0]
    return [e for e in evs if kind is None or e["event"] == kind]


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_and_write_an_adapter(tmp_path, base_model_dir):
    run_dir = make_run(tmp_path, base_model_dir, max_steps=8)
    final = runs.wait(runs.launch(run_dir), run_dir)
    assert final["status"] == "completed", final
    losses = [float(e["loss"]) for e in events(run_dir, "log")]
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    logs = events(run_dir, "log")
    assert all({"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(e) for e in logs)
    assert events(run_dir, "eval") and float(events(run_dir, "eval")[0]["eval_loss"]) > 0
    adapter = run_dir / "adapter"
    assert (adapter / "adapter_model.safetensors").exists() and (adapter / "chat_template.jinja").read_text()
    assert "im_start" in (run_dir / "chat_template.jinja").read_text()
    assert latest_checkpoint(run_dir).name == "checkpoint-8"


@pytest.mark.slow
def test_sigint_then_resume_and_a_corrupted_checkpoint_falls_back(tmp_path, base_model_dir):
    run_dir = make_run(tmp_path, base_model_dir, max_steps=40)
    proc = runs.launch(run_dir)
    deadline = time.time() + 240
    while time.time() < deadline and not [e for e in events(run_dir, "checkpoint") if e["step"] >= 4]:
        time.sleep(0.5)
    runs.stop(proc, signal.SIGINT)
    final = runs.wait(proc, run_dir)
    assert final["status"] == "stopped", final
    stopped_at = final["step"]
    assert 4 <= stopped_at < 40
    ckpt = latest_checkpoint(run_dir)
    assert ckpt.name == f"checkpoint-{stopped_at}"

    # Corrupt the newest checkpoint: resume must skip it, say so, and use the one before.
    (ckpt / "adapter_model.safetensors").write_bytes(b"garbage")
    previous = latest_checkpoint(run_dir)
    assert previous is not None and previous != ckpt
    prev_step = int(previous.name.rsplit("-", 1)[1])
    spec = TrainSpec.load(run_dir / "spec.json")
    spec.max_steps = prev_step + 2
    spec.save(run_dir / "spec.json")
    final = runs.wait(runs.launch(run_dir, resume=True), run_dir)
    assert final["status"] == "completed", final
    warnings = [e["message"] for e in events(run_dir, "warning")]
    assert any(ckpt.name in w and "corrupted" in w for w in warnings)
    running = [e for e in events(run_dir, "status") if e["status"] == "running"]
    assert running[-1].get("resumed_from") == prev_step
    resumed_logs = [e["step"] for e in events(run_dir, "log")][-2:]
    assert resumed_logs == [prev_step + 1, prev_step + 2]


@pytest.mark.slow
def test_nan_loss_fails_the_run_with_its_step(tmp_path, base_model_dir):
    run_dir = make_run(tmp_path, base_model_dir, max_steps=10, fault_nan_at_step=3)
    final = runs.wait(runs.launch(run_dir), run_dir)
    assert final["status"] == "failed"
    assert "nan" in final["message"].lower() and "step 3" in final["message"]
    assert not (run_dir / "adapter").exists()


@pytest.mark.slow
def test_neftune_noise_reaches_training_and_the_run_completes(tmp_path, base_model_dir):
    """neftune_alpha is not silently dropped: with the noise on, the same first step on the same rows and
    weights has a clearly higher loss."""
    losses = {}
    for alpha in (None, 50.0):
        run_dir = make_run(tmp_path / str(alpha), base_model_dir, max_steps=2, save_steps=2, neftune_alpha=alpha)
        final = runs.wait(runs.launch(run_dir), run_dir)
        assert final["status"] == "completed", final
        losses[alpha] = [round(float(e["loss"]), 4) for e in events(run_dir, "log")]
    assert len(losses[None]) == len(losses[50.0]) == 2
    # the first step sees the same weights and rows: only the noise can move its loss (3.8 → 8.9 here)
    assert losses[50.0][0] > losses[None][0] + 0.5, losses


def test_invalid_data_is_refused_before_the_model_loads(tmp_path):
    run_dir = make_run(tmp_path, "/nonexistent-model-never-loaded", max_steps=2)
    with open(run_dir / "data" / "train.jsonl", "a") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}]}))
    final = runs.wait(runs.launch(run_dir), run_dir)
    assert final["status"] == "failed"
    assert "train.jsonl:9" in final["message"] and "empty" in final["message"]


def test_accelerate_launch_is_used_for_several_processes(tmp_path):
    cfg = tmp_path / "ds.yaml"
    cfg.write_text("distributed_type: DEEPSPEED\n")
    one = runs.runner_command(tmp_path, TrainSpec())
    assert one[1:] == ["-m", "forge.train.runner", str(tmp_path)]
    many = runs.runner_command(tmp_path, TrainSpec(num_processes=4, accelerate_config=str(cfg)), resume=True)
    assert many[1:3] == ["-m", "accelerate.commands.launch"]
    assert many[many.index("--num_processes") + 1] == "4" and many[many.index("--config_file") + 1] == str(cfg)
    assert many[-4:] == ["-m", "forge.train.runner", str(tmp_path), "--resume"]
    with pytest.raises(ValueError, match="accelerate_config"):
        TrainSpec(accelerate_config=str(tmp_path / "missing.yaml"))


def test_backend_choice_on_a_machine_without_cuda():
    backend, why = pick_backend(TrainSpec())
    assert backend == "peft" and "auto" in why
    with pytest.raises(SpecError, match="GPU"):
        pick_backend(TrainSpec(backend="unsloth"))


def test_events_round_trip_and_torn_lines_wait(tmp_path):
    log = DiskLogger(tmp_path)
    log.log("log", step=1, loss=float("nan"), lr=1e-3)
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write('{"event": "log", "step": 2')  # a line still being written
    evs, offset = read_events(tmp_path)
    assert evs == [{"time": evs[0]["time"], "event": "log", "step": 1, "loss": "nan", "lr": 1e-3}]
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write(', "loss": 1.5}\n')
    more, _ = read_events(tmp_path, offset)
    assert more[0]["step"] == 2 and more[0]["loss"] == 1.5


@pytest.mark.slow
def test_cli_train_and_runs_contract(tmp_path, base_model_dir):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    ws = tmp_path / "ws"
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"input": u, "output": a}) + "\n" for u, a in EXAMPLES * 3))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}

    def forge(*args, check=True):
        p = subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), *args], capture_output=True,
                           text=True, cwd=REPO, env=env, timeout=600)
        assert p.returncode == 0 or not check, p.stderr
        return p

    forge("extract", "jsonl", str(data))
    p = forge("train", "--max-steps", "2", "--json", check=False)
    assert p.returncode == 1 and "no approved examples" in json.loads(p.stdout)["error"]
    forge("approve", *[str(i) for i in range(1, 5)])
    out = json.loads(forge("train", "--max-steps", "2", "--set", f"base_model={base_model_dir}",
                           "--set", "max_seq_len=64", "--json").stdout)
    assert set(out) >= {"run_id", "status", "first_loss", "last_loss", "adapter_dir"}
    assert out["status"] == "completed" and isinstance(out["first_loss"], float)
    listed = json.loads(forge("runs", "--json").stdout)
    assert listed[0]["run_id"] == out["run_id"] and listed[0]["status"] == "completed"
    p = forge("train", "--set", "lora_r=-1", "--json", check=False)
    assert p.returncode == 1 and "lora_r" in json.loads(p.stdout)["error"]
