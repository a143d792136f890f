"""`forge demo --adapters` reduced (2 steps, 3 held-out prompts per task): the structure, not the quality; Ctrl-C
leaves no companion behind; a task with --adapters is refused. (A file of its own so the test-suite workers can
run it beside the other demo tests.)"""

import json
from pathlib import Path

import pytest

from forge.demo import DEMO_DIR, TASKS, run_adapters_demo


@pytest.mark.slow
def test_demo_adapters_two_tasks_two_adapters_one_companion_reduced(tmp_path, base_model_dir):
    import os

    from forge.store import Store

    lines = []
    r = run_adapters_demo(tmp_path / "ws", lines.append, max_steps=2, heldout_limit=3, base_model=str(base_model_dir))
    assert set(r["tasks"]) == {"reminders", "intent"} and r["base"] == "base"
    adapters = {t: d["adapter_id"] for t, d in r["tasks"].items()}
    # Two runs, two adapters (GGUF LoRA, not merged exports), both of the one base.
    assert len({d["run_id"] for d in r["tasks"].values()}) == 2 and len(set(adapters.values())) == 2
    store = Store(tmp_path / "ws" / "forge.db")
    records = {m["id"]: m for m in store.models()}
    assert all(records[a]["meta"]["kind"] == "adapter" and records[a]["meta"]["base_id"] == "base"
               for a in adapters.values())
    assert all(m["meta"].get("kind") == "adapter" for m in records.values() if m["run_id"])  # no merged export
    # ONE companion listed both adapters, loaded, under the base it served; then it was stopped.
    c = r["companion"]
    listed = {m["id"]: m for m in c["models"]}
    assert listed["base"]["kind"] == "model" and listed["base"]["loaded"] is True
    for a in adapters.values():
        assert listed[a] == {"id": a, "kind": "adapter", "parent": "base", "loaded": True}
    assert sorted(c["adapters_loaded"]) == sorted(adapters.values())
    assert c["stopped"] and sum("starting one companion" in line for line in lines) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(c["pid"], 0)
    # Each task asked of its own adapter and of the base, through that companion, on its own held-out file.
    for task, d in r["tasks"].items():
        assert d["heldout_file"] == TASKS[task].heldout_file and d["n"] == 3, d["leaks"]
        assert d["answered_by"] == {"adapter": [d["adapter_id"]], "base": ["base"]}
        assert d["adapter"]["errors"] == 0 and d["base"]["errors"] == 0
        held = [json.loads(x) for x in (DEMO_DIR / TASKS[task].heldout_file).read_text().splitlines()[:3]]
        for model in (d["adapter_id"], "base"):
            (ev,) = store.evals(model) if model != "base" else [e for e in store.evals("base")
                                                                 if e["dataset"] == d["dataset"]]
            assert ev["dataset"].startswith(TASKS[task].heldout_file + ":") and ev["metrics"]["eval"]["via"] == c["url"]
            firsts = [h["messages"][-2]["content"] if "messages" in h else h["input"] for h in held]
            assert [o["prompt"] for o in ev["outputs"]] == firsts
        # adapter − base with a paired interval on the task's own metrics
        assert "exact_match" in d["comparison"] and 0 <= d["adapter"]["exact_match"] <= 1
    intent = r["tasks"]["intent"]
    assert {"json_valid", "json_field_accuracy"} <= set(intent["comparison"])
    assert intent["adapter"]["intent_accuracy"] is not None and r["tasks"]["reminders"]["adapter"]["json_valid"] is None
    store.close()


@pytest.mark.slow
def test_the_demo_companion_and_its_worker_are_gone_after_ctrl_c(tmp_path):
    """Ctrl-C (or any error) while the demo's companion serves: `forge serve` and its llama.cpp worker both end."""
    import os
    import time

    import httpx

    from forge.demo import Companion

    (tmp_path / "ws").mkdir()
    with pytest.raises(KeyboardInterrupt):
        with Companion(tmp_path / "ws") as c:
            assert c.url.startswith("http://127.0.0.1:") and httpx.get(f"{c.url}/health").json()["model"] == "base"
            pid = c.proc.pid
            children = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
            assert children  # the worker process that holds the model
            raise KeyboardInterrupt
    assert c.proc.poll() is not None
    deadline = time.monotonic() + 30
    for child in children:
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the companion's worker {child} outlived it")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{c.url}/health", timeout=2)


def test_demo_adapters_refuses_a_task_and_leaves_the_folder_alone(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "forge", "-w", str(tmp_path / "ws"), "demo", "--adapters", "--task",
                        "summarize"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip() == (
        "forge: error: --adapters trains its own two tasks (reminders and intent); leave out --task")
    assert not (tmp_path / "ws").exists()
