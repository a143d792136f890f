"""`forge prefs draft`: the bundled base answers the prompts of the person's approved notes through a real llama.cpp
child; each stored draft becomes the rejected side of a self-play pair, and `forge prefs` counts it."""

from __future__ import annotations

import json

from click.testing import CliRunner

from forge.cli import main
from forge.data.extract import run_extract
from tests.conftest import SAMPLE_VAULT


def test_drafts_of_approved_notes_become_self_play_pairs(store, config):
    run_extract(store, "obsidian", SAMPLE_VAULT, config)
    notes = store.examples()[:3]
    for ex in notes[:2]:
        store.set_status(ex.id, "approved")
    ws = str(config.workspace_path())
    r = CliRunner().invoke(main, ["--workspace", ws, "prefs", "draft", "--max-tokens", "12", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["model_id"] == "base" and out["drafted"] + out["failed"] == 2 and out["drafted"] >= 1
    drafts = store.drafts("base")
    assert {d["example_id"] for d in drafts} <= {notes[0].id, notes[1].id}
    assert all(d["text"].strip() for d in drafts)
    r = CliRunner().invoke(main, ["--workspace", ws, "prefs", "--json"])
    counts = json.loads(r.output)
    assert counts["pairs"]["self-play"] == out["drafted"]
    r = CliRunner().invoke(main, ["--workspace", ws, "prefs"])
    assert f"self-play {out['drafted']}" in r.output


def test_drafting_with_nothing_approved_says_what_to_do(store, config):
    r = CliRunner().invoke(main, ["--workspace", str(config.workspace_path()), "prefs", "draft"])
    assert r.exit_code != 0
    assert "no approved notes of yours to draft answers for" in r.output


def test_dataset_export_preferences_from_the_cli(store, config, tmp_path):
    store.ingest([{"extract_key": "llm:x:1", "source_kind": "llm:x", "source_ref": "x", "tags": [],
                   "messages": [{"role": "user", "content": "Capital of Peru?"},
                                {"role": "assistant", "content": "Certainly! The capital of Peru is Lima."}]}])
    ex = store.examples()[0]
    store.edit(ex.id, ex.messages[:-1] + [{"role": "assistant", "content": "Lima."}])
    store.set_status(ex.id, "approved")
    r = CliRunner().invoke(main, ["--workspace", str(config.workspace_path()), "dataset", "export", "--out",
                                  str(tmp_path / "p"), "--preferences"])
    assert r.exit_code == 0, r.output
    assert "dpo: train 1, val 0, test 0" in r.output and "by source: edit 1" in r.output
    rec = json.loads((tmp_path / "p" / "train.jsonl").read_text())
    assert rec["chosen"] == [{"role": "assistant", "content": "Lima."}]
    assert rec["rejected"][0]["content"] == "Certainly! The capital of Peru is Lima."
