"""`forge demo` end to end in a reduced form (1 training step, 3 held-out prompts) on the summaries task, the one
with the lead-N baseline and risk markers; the reminders task runs the same code with another data file and spec.
And the demo's safety rules. `forge demo --adapters`: tests/forge/test_demo_adapters.py."""

import json

import pytest

from forge.demo import DEMO_DIR, MARKER, TASKS, DemoError, markers_kept, run_demo


@pytest.mark.slow
def test_demo_summaries_end_to_end_reduced(tmp_path, base_model_dir):
    lines = []
    r = run_demo(tmp_path / "demo-ws", lines.append, max_steps=1, heldout_limit=3, base_model=str(base_model_dir),
                 task="summarize")
    assert r["task"] == "summarize" and r["model_id"].startswith(r["run_id"]) and r["model_id"].endswith("q4_k_m")
    assert r["n"] == 3, r["leaks"]  # the held-out dialogues have no near-duplicate in training
    for role in ("model", "baseline"):
        assert set(r[role]) >= {"exact_match", "rouge_l", "rouge_lsum", "bleu", "latency_p50_ms", "tokens_per_s"}
    # Summaries get the extractive baseline and a paired interval against it and against base.
    assert r["lead"]["id"].startswith("lead-") and set(r["comparisons"]) == {"base", r["lead"]["id"]}
    assert any(r["lead"]["id"] in s for s in r["summary"])
    assert r["max_tokens"] >= 16 and r["train_minutes"] <= r["minutes"]
    # Marker preservation is reported for each system; the third held-out dialogue has a risk marker.
    marked = sum("{{RED:" in line for line in (DEMO_DIR / TASKS["summarize"].heldout_file).read_text().splitlines()[:3])
    assert marked >= 1 and set(r["markers"]) == {"tuned", "base", r["lead"]["id"]}
    assert all(m["n"] == marked and 0 <= m["kept"] <= marked for m in r["markers"].values())
    n_train = len((DEMO_DIR / TASKS["summarize"].train_file).read_text().splitlines())
    assert any(f"approved {n_train} dialogues" in line for line in lines)
    assert (tmp_path / "demo-ws" / MARKER).exists()
    # The held-out file is never imported: none of its speakers is in the store the model trained from.
    from forge.store import Store

    held = [json.loads(x) for x in (DEMO_DIR / TASKS["summarize"].heldout_file).read_text().splitlines()]
    held_speakers = {ln.split(":")[0] for h in held for ln in h["messages"][0]["content"].split("\n")[2:]}
    store = Store(tmp_path / "demo-ws" / "forge.db")
    speakers = {ln.split(":")[0] for e in store.examples() for ln in e.messages[0]["content"].split("\n")[2:]}
    assert store.counts()["total"] == n_train and speakers and not speakers & held_speakers
    store.close()


def test_markers_kept_counts_only_byte_for_byte_copies():
    prompts = ["A: hi\nB: {{RED:I want out}}", "A: hi\nB: {{RED:I  stopped\ttaking my meds}} and {{RED:no sleep}}",
               "A: hi\nB: fine", "A: hi\nB: {{RED:alone}}"]
    outputs = ["B is low. Risk: {{RED:I want out}}.",
               "B stopped meds. Risk: {{RED:I stopped taking my meds}}, {{RED:no sleep}}.",  # spaces normalised
               "B is fine. {{RED:made up}}",  # a marker the dialogue does not have
               "B feels alone."]  # dropped
    assert markers_kept(prompts, outputs) == {"n": 3, "kept": 1, "share": 1 / 3, "invented": 2}
    assert markers_kept(["A: hi"], ["hello"]) is None  # no marker anywhere: nothing to report


def test_every_demo_task_has_its_files_and_a_valid_spec():
    from forge.train.spec import TrainSpec

    for name, task in TASKS.items():
        assert (DEMO_DIR / task.train_file).exists() and (DEMO_DIR / task.heldout_file).exists(), name
        spec = TrainSpec(**task.spec)
        assert spec.max_steps and spec.max_steps <= 400, name  # bounded: a demo must finish on a laptop CPU


def test_demo_refuses_an_unknown_task_before_touching_the_folder(tmp_path):
    with pytest.raises(DemoError, match="unknown demo task 'poems'.*reminders, summarize"):
        run_demo(tmp_path / "ws", lambda s: None, task="poems")
    assert not (tmp_path / "ws").exists()


def test_demo_never_wipes_a_folder_it_did_not_make(tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.md").write_text("keep me")
    with pytest.raises(DemoError, match="not made by `forge demo`"):
        run_demo(precious, lambda s: None)
    assert (precious / "notes.md").read_text() == "keep me"
