"""The voice judge inside Eval: on by itself when the held-out texts are the person's own notes (the dataset's
manifest counts vault notes), forced with voice=True, off with voice=False; stored with the model's metrics, in
the JSON and markdown reports, and in the Eval mode's panel."""

from __future__ import annotations

import json

import pytest

from forge import eval as ev
from forge.data.dataset import export_dataset
from forge.data.extract import run_extract
from forge.models import export as ex
from tests.conftest import SAMPLE_VAULT


def write_manifest(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(fields))
    (folder / "test.jsonl").write_text("")
    return folder / "test.jsonl"


def test_notes_held_out_are_the_persons_writing_rows_of_a_csv_are_not(tmp_path):
    assert ev.written_by_the_person(write_manifest(tmp_path / "vault", test=5, notes={"test": 4}))
    assert ev.written_by_the_person(write_manifest(tmp_path / "chunks", test=6, notes={"test": 3}))  # long notes
    assert not ev.written_by_the_person(write_manifest(tmp_path / "csv", test=5, notes={"test": 0}))
    assert not ev.written_by_the_person(write_manifest(tmp_path / "mixed", test=10, notes={"test": 2}))
    assert not ev.written_by_the_person(write_manifest(tmp_path / "old", test=5))  # before notes were counted
    (tmp_path / "none").mkdir()
    assert not ev.written_by_the_person(tmp_path / "none" / "test.jsonl")


@pytest.mark.slow
def test_eval_on_held_out_notes_judges_the_voice_and_reports_it(store, config, tmp_path):
    """Held-out notes of a vault export: the judge runs by itself (the bundled base as "tuned", a copy of it under
    another id as the base), is stored with the model's metrics, and the markdown report and the JSON carry it;
    voice=False leaves it out."""
    run_extract(store, "obsidian", SAMPLE_VAULT, config, all_notes=True)
    for e in store.examples():
        store.set_status(e.id, "approved")
    ds = tmp_path / "ds"
    export_dataset(store, ds, config, val=0.3, test=0.3, seed=1)
    assert json.loads((ds / "manifest.json").read_text())["notes"]["test"] > 0
    base = ex.register_bundled_base(store, config)
    ex.import_gguf(store, config, base["path"], "twin")
    r = ev.evaluate(store, "twin", "base", dataset_dir=str(ds), max_tokens=24, config=config)
    voice = r["voice"]
    assert voice is not None and set(voice["systems"]) == {"tuned", "base"}
    assert voice["names"] == {"tuned": "twin", "base": "base"}
    tuned = voice["systems"]["tuned"]
    assert tuned["texts"] == r["n"] and 0 <= tuned["loop_rate"] <= 1
    assert tuned["auc"] is not None or tuned["reason"]  # a handful of notes may be too few to classify
    assert tuned["copying"] is None  # twin was not trained here: no notes to copy from
    assert voice["person"]["profile"]["answers"] == r["n"]
    assert voice["systems"]["base"]["profile"] == tuned["profile"]  # the same weights, the same greedy answers
    assert store.evals("twin")[0]["metrics"]["voice"]["summary"] == voice["summary"]
    md, js = ev.report(store, "twin", "base", None, tmp_path / "reports")
    assert "## Your voice" in md.read_text() and "style AUC" in md.read_text()
    data = json.loads(js.read_text())
    assert data["voice"]["summary"] == voice["summary"] and "voice" not in data["metrics"]["model"]
    off = ev.evaluate(store, "twin", None, dataset_dir=str(ds), max_tokens=8, config=config, voice=False)
    assert off["voice"] is None and "voice" not in off["model"]


def test_a_judge_that_fails_is_reported_and_a_panel_for_another_baseline_is_not_shown(store, monkeypatch):
    """The generations are stored whatever the judge does: a failure becomes a one-line panel; a stored judgement
    against one baseline is not shown when the model is compared with another."""
    from forge.eval import voice

    def broken(*args, **kwargs):
        raise ValueError("no n-grams")

    monkeypatch.setattr(voice, "judge", broken)
    recs = {"model": [{"expected": "my note", "output": "an answer"}],
            "baseline": [{"expected": "my note", "output": "another"}]}
    r = ev.judge_voice(store, recs, "twin", "base")
    assert r["error"] == "ValueError: no n-grams" and r["names"] == {"tuned": "twin", "base": "base"}
    assert "could not be judged: ValueError: no n-grams" in voice.panel(r, "base")
    assert voice.panel(r, "other-model") is None and voice.panel(None, "base") is None
