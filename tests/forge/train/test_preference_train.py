"""Preference training with the real SmolLM2 base on a CPU: `forge train --method dpo` on the pairs a person's edits
made, KTO on top of that run (`--from`), and a NaN loss failing the run, through the CLI a user runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from forge.cli import main
from forge.train.events import read_events as _read


def read_events(run_dir):
    return _read(run_dir)[0]

FILLER = "Certainly! I'd be happy to help. "
QA = [("remind me to call mom tomorrow at 5", "call mom | tomorrow at 5"),
      ("dont let me forget the dentist on friday", "dentist | friday"),
      ("ping me to water the plants tonight", "water the plants | tonight"),
      ("i need to pay rent on the 1st", "pay rent | the 1st"),
      ("remember to buy milk after work", "buy milk | after work"),
      ("Erinnere mich an den Zahnarzt am Montag", "Zahnarzt | Montag"),
      ("book flights before sunday", "book flights | before sunday"),
      ("send the report by 9am", "send the report | 9am")]


@pytest.fixture(scope="module")
def pref_ws(tmp_path_factory, base_model_dir):
    """A workspace whose machine-written answers (each opening with filler) the person edited and approved."""
    from forge.store import Store

    ws = tmp_path_factory.mktemp("pref-ws")
    (ws / "config.json").write_text(json.dumps({"workspace": str(ws)}))
    store = Store.for_workspace(ws)
    store.ingest([{"extract_key": f"llm:gen:{i}", "source_kind": "llm:some-model", "source_ref": f"gen:{i}",
                   "tags": [], "messages": [{"role": "user", "content": q},
                                            {"role": "assistant", "content": FILLER + a}]}
                  for i, (q, a) in enumerate(QA)])
    for ex in store.examples():
        store.edit(ex.id, ex.messages[:-1] + [{"role": "assistant",
                                               "content": ex.messages[-1]["content"].replace(FILLER, "")}])
        store.set_status(ex.id, "approved")
    store.close()
    return ws, base_model_dir


def forge(ws, *args):
    return CliRunner().invoke(main, ["--workspace", str(ws), *args, "--json"], catch_exceptions=False)


def test_dpo_then_kto_on_top_of_it(pref_ws):
    ws, base = pref_ws
    common = ["--set", f"base_model={base}", "--set", "batch_size=4", "--set", "lora_r=8",
              "--set", 'target_modules=["q_proj","v_proj"]', "--set", "forgetting_check=false",
              "--set", "eval_steps=2", "--set", "learning_rate=0.005", "--set", "warmup_ratio=0"]
    r = forge(ws, "train", "--method", "dpo", "--max-steps", "3", *common)
    assert r.exit_code == 0, r.output
    dpo = json.loads(r.output)
    assert dpo["status"] == "completed", dpo
    run_dir = ws / "runs" / dpo["run_id"]
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["method"] == "dpo" and spec["preference_data"]["sources"] == {"edit": len(QA)}
    logs = [e for e in read_events(run_dir) if e["event"] == "log"]
    assert len(logs) == 3 and all("rewards_margin" in e and "rewards_accuracy" in e for e in logs)
    assert logs[-1]["rewards_margin"] > 0  # the edited answers gained on the filler ones
    assert any("eval_rewards_margin" in e for e in read_events(run_dir) if e["event"] == "eval")
    adapter = run_dir / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    assert not (adapter / "ref").exists()  # TRL's frozen reference copy is not part of the adapter
    assert json.loads((adapter / "forge_adapter.json").read_text())["method"] == "dpo"

    r = forge(ws, "train", "--method", "kto", "--from", dpo["run_id"], "--max-steps", "2", *common)
    kto = json.loads(r.output)
    assert kto["status"] == "completed", kto
    kto_dir = ws / "runs" / kto["run_id"]
    assert json.loads((kto_dir / "spec.json").read_text())["from_run"] == dpo["run_id"]
    events = read_events(kto_dir)
    assert any(dpo["run_id"] in (e.get("message") or "") for e in events if e["event"] == "info")
    assert all("rewards_margin" in e for e in events if e["event"] == "log")
    # the reference is the DPO run's adapter (precomputed before step 1), not the base: nothing has moved yet
    first = next(e for e in events if e["event"] == "log")
    assert abs(first["rewards_chosen"]) < 1e-3, first
    assert any("computed once, before step 1" in (e.get("message") or "") for e in events if e["event"] == "info")
    listed = {r["run_id"]: r for r in json.loads(forge(ws, "runs").output)}
    assert listed[kto["run_id"]]["method"] == "kto" and listed[kto["run_id"]]["from_run"] == dpo["run_id"]
    assert listed[dpo["run_id"]]["method"] == "dpo" and listed[dpo["run_id"]]["from_run"] is None

    # the exported adapter's provenance names the method, the run it started from and its pairs' sources
    import gguf

    from forge.config import Config
    from forge.models import export as ex
    from forge.store import Store

    store = Store.for_workspace(ws)
    path = ex.export_adapter(store, Config(workspace=str(ws)), kto["run_id"])["path"]
    store.close()
    reader = gguf.GGUFReader(path)
    field = lambda key: reader.fields[key].contents()  # noqa: E731
    assert field("forge.method") == "kto" and field("forge.from_run") == dpo["run_id"]
    assert json.loads(field("forge.preferences")) == {"approve": len(QA), "edit": len(QA)}


def test_from_a_run_without_an_adapter_is_refused_in_one_line(pref_ws):
    ws, base = pref_ws
    r = CliRunner().invoke(main, ["--workspace", str(ws), "train", "--method", "dpo", "--from", "run-nope",
                                  "--set", f"base_model={base}"])
    assert r.exit_code != 0
    assert "from_run run-nope: no finished adapter" in r.output
    assert not [p for p in (ws / "runs").iterdir() if not (p / "spec.json").exists()]  # no half-made run left


def test_a_nan_dpo_loss_fails_the_run_with_its_step(pref_ws):
    ws, base = pref_ws
    r = CliRunner().invoke(main, ["--workspace", str(ws), "train", "--method", "dpo", "--max-steps", "3",
                                  "--set", f"base_model={base}", "--set", "batch_size=4", "--set", "lora_r=8",
                                  "--set", 'target_modules=["q_proj"]', "--set", "forgetting_check=false",
                                  "--set", "fault_nan_at_step=2", "--json"])
    out = json.loads(r.output)
    assert out["status"] == "failed" and "loss became nan at step 2" in out["message"]


def test_a_tracker_that_is_not_installed_is_refused_before_the_run(pref_ws):
    import importlib.util

    ws, base = pref_ws
    missing = next((t for t in ("wandb", "trackio", "mlflow", "tensorboard")
                    if not importlib.util.find_spec(t) and not (t == "tensorboard"
                                                                and importlib.util.find_spec("tensorboardX"))), None)
    if missing is None:
        pytest.skip("every tracker package is installed here")
    before = set((ws / "runs").iterdir())
    r = CliRunner().invoke(main, ["--workspace", str(ws), "train", "--set", f"base_model={base}",
                                  "--set", f"report_to={missing}"])
    assert r.exit_code != 0
    assert f"report_to {missing}: the" in r.output and "package is not installed" in r.output
    assert set((ws / "runs").iterdir()) == before  # no run folder made



def test_orpo_trains_on_the_pairs_with_no_reference_model(pref_ws):
    ws, base = pref_ws
    r = forge(ws, "train", "--method", "orpo", "--max-steps", "2", "--set", f"base_model={base}",
              "--set", "batch_size=4", "--set", "lora_r=8", "--set", 'target_modules=["q_proj"]',
              "--set", "forgetting_check=false")
    out = json.loads(r.output)
    assert out["status"] == "completed", out
    logs = [e for e in read_events(ws / "runs" / out["run_id"]) if e["event"] == "log"]
    assert len(logs) == 2 and all("rewards_margin" in e for e in logs)


def test_a_dpo_run_resumes_from_its_checkpoint_with_its_reference(pref_ws):
    """Resume a finished-early DPO run: the trained adapter and TRL's frozen reference come back from the
    checkpoint, the steps carry on where they stopped, and the reward margin keeps its sign."""
    from forge.train import runs
    from forge.train.spec import TrainSpec

    ws, base = pref_ws
    r = forge(ws, "train", "--method", "dpo", "--max-steps", "2", "--set", f"base_model={base}",
              "--set", "batch_size=4", "--set", "lora_r=8", "--set", 'target_modules=["q_proj","v_proj"]',
              "--set", "forgetting_check=false", "--set", "save_steps=2", "--set", "learning_rate=0.005",
              "--set", "warmup_ratio=0")
    out = json.loads(r.output)
    assert out["status"] == "completed", out
    run_dir = ws / "runs" / out["run_id"]
    assert (run_dir / "checkpoints" / "checkpoint-2").is_dir()
    spec = TrainSpec.load(run_dir / "spec.json")
    spec.max_steps = 4
    spec.save(run_dir / "spec.json")
    final = runs.wait(runs.launch(run_dir, resume=True), run_dir)
    assert final["status"] == "completed", final
    events = read_events(run_dir)
    running = [e for e in events if e["event"] == "status" and e["status"] == "running"]
    assert running[-1].get("resumed_from") == 2
    logs = [e for e in events if e["event"] == "log"]
    assert [e["step"] for e in logs][-2:] == [3, 4]
    assert logs[-1]["rewards_margin"] > 0
    assert not (run_dir / "adapter" / "ref").exists()
