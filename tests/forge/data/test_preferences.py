"""Preferences from the store (forge/data/preferences.py) and their export (forge dataset export --preferences): every
edit, vote, rejection and draft a person made becomes a pair or a label with its source, and the export is a pure
function of the store — the same bytes after undo/redo and after a crash mid-export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forge.data.dataset import DatasetError, export_dataset
from forge.data.preferences import build, counts, describe, export_preferences

FILLER = "Sure! Here is what you asked for: "
QA = [("What do bees make?", "Honey."), ("Which planet is red?", "Mars."), ("What is H2O?", "Water."),
      ("Who wrote Hamlet?", "Shakespeare."), ("How many legs does a spider have?", "Eight."),
      ("What is the opposite of hot?", "Cold."), ("Name a primary colour.", "Red — or blue, or yellow."),
      ("Capital of Japan?", "Tokyo."), ("¿Cómo se dice 'cat' en alemán?", "Katze."), ("What is 7×6?", "42.")]


def ingest_machine_answers(store, qa=QA, kind="jsonl"):
    store.ingest([{"extract_key": f"{kind}:gen:{i}", "source_kind": kind, "source_ref": f"gen.jsonl:{i + 1}",
                   "line": i + 1, "tags": [],
                   "messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": q},
                                {"role": "assistant", "content": FILLER + a}]} for i, (q, a) in enumerate(qa)])
    return store.ids()


def strip_filler(store, ids):
    for i in ids:
        ex = store.get(i)
        store.edit(i, ex.messages[:-1] + [{"role": "assistant",
                                           "content": ex.messages[-1]["content"].replace(FILLER, "")}])
        store.set_status(i, "approved")


def test_edits_of_machine_answers_become_pairs_and_undo_takes_them_back(store):
    ids = ingest_machine_answers(store)
    strip_filler(store, ids[:4])
    prefs = build(store)
    assert [p.source for p in prefs.pairs] == ["edit"] * 4
    first = prefs.pairs[0]
    assert first.chosen == "Honey." and first.rejected == FILLER + "Honey."
    assert first.prompt[0] == {"role": "system", "content": "Answer briefly."}  # the whole prompt, system included
    assert first.ref == f"example {ids[0]} (edited)"
    # the imported answer an edit replaced is an undesirable KTO label, the approved answer a desirable one
    assert (FILLER + "Honey.", False) in {(lb.completion, lb.label) for lb in prefs.labels}
    assert counts(store)["pairs"]["edit"] == 4
    store.undo()  # the approval of the 4th
    store.undo()  # its edit: no pair from it any more
    assert counts(store)["pairs"]["edit"] == 3
    store.redo()
    store.redo()
    assert counts(store)["pairs"]["edit"] == 4


def test_edits_of_the_persons_own_notes_are_no_preference(sample_store):
    store = sample_store
    ex = store.examples()[0]
    store.edit(ex.id, ex.messages[:-1] + [{"role": "assistant", "content": ex.messages[-1]["content"] + " (typo fixed)"}])
    store.set_status(ex.id, "approved")
    c = counts(store)
    assert c["pairs_total"] == 0
    assert c["labels"]["desirable"] == 1  # approving it is still a KTO label


def test_rejections_are_undesirable_labels(store):
    ids = ingest_machine_answers(store)
    for i in ids[:3]:
        store.set_status(i, "rejected")
    for i in ids[3:5]:
        store.set_status(i, "approved")
    c = counts(store)
    assert c["labels"] == {"desirable": 2, "undesirable": 3}
    assert c["labels_by_source"]["reject"] == 3 and c["labels_by_source"]["approve"] == 2
    assert describe(c) == "0 preference pairs · KTO 2 good / 3 bad"


def test_eval_votes_become_pairs_ties_do_not(store):
    prompts = [[{"role": "user", "content": q}] for q, _ in QA[:4]]
    tuned = [{"output": a, "prompt": p[-1]["content"], "messages": p, "expected": a} for p, (_, a) in zip(prompts, QA)]
    base = [{"output": FILLER + a, "prompt": p[-1]["content"], "messages": p, "expected": a}
            for p, (_, a) in zip(prompts, QA)]
    base[3]["output"] = tuned[3]["output"]  # identical answers: no pair whatever the vote
    store.save_eval("tuned-q4", "held.jsonl@abc", {}, tuned)
    store.save_eval("base", "held.jsonl@abc", {}, base)
    store.vote("tuned-q4", "base", "held.jsonl@abc", 0, "model")
    store.vote("tuned-q4", "base", "held.jsonl@abc", 1, "baseline")
    store.vote("tuned-q4", "base", "held.jsonl@abc", 2, "tie")
    store.vote("tuned-q4", "base", "held.jsonl@abc", 3, "model")
    pairs = build(store).pairs
    assert [(p.source, p.chosen, p.rejected) for p in pairs] == [
        ("vote", "Honey.", FILLER + "Honey."), ("vote", FILLER + "Mars.", "Mars.")]
    assert "prompt 1" in pairs[0].ref and "voted tuned-q4" in pairs[0].ref
    store.vote("tuned-q4", "base", "held.jsonl@abc", 1, "tie")  # changing a vote changes the pair
    assert [p.chosen for p in build(store).pairs] == ["Honey."]


def test_drafts_of_the_persons_notes_make_self_play_pairs_for_their_prompt_only(sample_store):
    store = sample_store
    exs = store.examples()[:2]
    for ex in exs:
        store.set_status(ex.id, "approved")
    store.save_drafts("base", {ex.id: (ex.messages[:-1], "As an AI language model, I think…") for ex in exs})
    pairs = build(store).pairs
    assert [p.source for p in pairs] == ["self-play", "self-play"]
    assert pairs[0].chosen == exs[0].messages[-1]["content"]
    assert pairs[0].rejected == "As an AI language model, I think…"
    # a prompt edited since the draft was made: that draft answered another question
    ex = exs[0]
    store.edit(ex.id, [{"role": "user", "content": "A different question?"}, ex.messages[-1]])
    assert [p.example_id for p in build(store).pairs] == [exs[1].id]


def test_preference_export_is_trl_format_split_like_sft_and_pure(store, config, tmp_path):
    ids = ingest_machine_answers(store)
    strip_filler(store, ids)
    sft = export_dataset(store, tmp_path / "sft", config)
    r = export_preferences(store, tmp_path / "p1", config, kind="dpo")
    assert r["train"] + r["val"] + r["test"] == 10 and r["sources"] == {"edit": 10}
    rec = json.loads((tmp_path / "p1" / "train.jsonl").read_text().splitlines()[0])
    assert set(rec) == {"prompt", "chosen", "rejected", "source", "ref"}
    assert rec["chosen"][0]["role"] == "assistant" and rec["prompt"][-1]["role"] == "user"
    # a pair lands in the split its example has in the SFT export: no held-out prompt is trained on
    manifest = json.loads((tmp_path / "sft" / "manifest.json").read_text())
    for name in ("train", "val", "test"):
        refs = [json.loads(line)["ref"] for line in (tmp_path / "p1" / f"{name}.jsonl").read_text().splitlines()]
        assert sorted(int(ref.split()[1]) for ref in refs) == manifest["ids"][name]
    assert sft["test"] == r["test"]
    # undo + redo, and an export again: the same bytes
    store.undo()
    store.redo()
    export_preferences(store, tmp_path / "p2", config, kind="dpo")
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "manifest.json"):
        assert (tmp_path / "p1" / name).read_bytes() == (tmp_path / "p2" / name).read_bytes()
    k = export_preferences(store, tmp_path / "kto", config, kind="kto")
    rec = json.loads((tmp_path / "kto" / "train.jsonl").read_text().splitlines()[0])
    assert set(rec) == {"prompt", "completion", "label", "source", "ref"} and isinstance(rec["label"], bool)
    assert k["train"] + k["val"] + k["test"] == 20  # 10 approved answers, 10 answers an edit replaced


def test_a_crash_mid_export_loses_nothing_and_the_next_export_is_whole(store, config, tmp_path):
    ids = ingest_machine_answers(store)
    strip_filler(store, ids)
    clean = tmp_path / "clean"
    export_preferences(store, clean, config, kind="dpo")
    out = tmp_path / "crashed"
    code = ("import sys; from forge.config import Config; from forge.store import Store; "
            "from forge.data.preferences import export_preferences; "
            f"c = Config(workspace={str(config.workspace_path())!r}); "
            f"export_preferences(Store.for_workspace(c.workspace_path()), {str(out)!r}, c, kind='dpo')")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FORGE_EXPORT_FAULT": "preferences"},
                          capture_output=True)
    assert proc.returncode == -9
    assert (out / "train.jsonl").exists() and not (out / "manifest.json").exists()
    assert counts(store)["pairs"]["edit"] == 10  # the store is untouched
    export_preferences(store, out, config, kind="dpo")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in clean.iterdir())
    for p in clean.iterdir():
        assert (out / p.name).read_bytes() == p.read_bytes()


def test_nothing_to_export_says_what_to_do(store, config, tmp_path):
    with pytest.raises(DatasetError, match="no preference pairs: edit machine-written answers in Curate"):
        export_preferences(store, tmp_path / "p", config, kind="dpo")


def test_an_undesirable_kto_import_is_never_sft_data(store, config, tmp_path):
    store.ingest([{"extract_key": f"kto:{i}", "source_kind": "jsonl", "source_ref": f"k.jsonl:{i}", "tags": [],
                   "meta": {"label": good},
                   "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                  for i, ((q, a), good) in enumerate(zip(QA[:4], [True, False, True, False]))])
    for i in store.ids():
        store.set_status(i, "approved")
    r = export_dataset(store, tmp_path / "sft", config)
    assert r["train"] + r["val"] + r["test"] == 2
    c = counts(store)
    assert c["labels"] == {"desirable": 2, "undesirable": 2} and c["labels_by_source"]["import"] == 4
