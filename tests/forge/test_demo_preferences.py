"""`forge demo --task preferences`, its parts that need no training: the chatty training file, the person's fixes
through the store's decisions (each edit a DPO pair, each rejection a KTO label), and the filler rate Eval reports.
The whole demo (SFT, DPO, KTO, three evals) takes ~15 min on a CPU: its figures are in the README."""

from __future__ import annotations

from forge.data.preferences import counts
from forge.demo_preferences import FILLER_RE, FILLER_SHARE, OPENERS, chatty_rows, filler_rate, person_fixes


def test_the_chatty_file_is_seeded_and_mostly_filler():
    rows = chatty_rows()
    assert rows == chatty_rows()  # the same file every run
    share = sum(1 for r in rows if FILLER_RE.search(r["messages"][-1]["content"])) / len(rows)
    assert abs(share - FILLER_SHARE) < 0.06
    assert all(r["source_kind"].startswith("llm:") for r in rows)  # machine-written: an edit of one is a pair


def test_the_persons_fixes_are_decisions_that_make_pairs_and_labels(store):
    store.ingest(chatty_rows())
    store.decide("approve-all", {i: {"status": "approved"} for i in store.ids()})
    fixes = person_fixes(store)
    c = counts(store)
    assert c["pairs"]["edit"] == fixes["edited"] > 100
    assert c["labels_by_source"]["reject"] == fixes["rejected"] > 40
    for ex in store.examples(status="approved"):
        if ex.edited:  # the edit took exactly the opener out
            assert not FILLER_RE.search(ex.messages[-1]["content"])
    store.undo()  # the rejections, as one decision
    assert counts(store)["labels_by_source"]["reject"] == 0


def test_filler_rate_counts_answers_that_open_with_filler():
    outs = [OPENERS[0] + "call mom | 5pm", "call mom | 5pm", "Certainly, I'd be happy to help!", "", "  Sure — ok"]
    assert filler_rate(outs) == {"n": 5, "filler": 3, "rate": 0.6}
    assert filler_rate([])["rate"] is None
