"""`forge demo` end to end in a reduced form (2 training steps, 3 held-out prompts), and its safety rule."""

import pytest

from forge.demo import MARKER, DemoError, run_demo


@pytest.mark.slow
def test_demo_pipeline_end_to_end_reduced(tmp_path, base_model_dir):
    lines = []
    r = run_demo(tmp_path / "demo-ws", lines.append, max_steps=2, heldout_limit=3, base_model=str(base_model_dir))
    assert r["n"] == 3 and r["model_id"].startswith(r["run_id"]) and r["model_id"].endswith("q4_k_m")
    for role in ("model", "baseline"):
        assert set(r[role]) >= {"exact_match", "rouge_l", "bleu", "latency_p50_ms", "tokens_per_s"}
    assert any("approved 400" in line for line in lines)
    assert (tmp_path / "demo-ws" / MARKER).exists()
    # Held-out requests are never imported: nothing of them is in the store the model trained from.
    from forge.store import Store

    store = Store(tmp_path / "demo-ws" / "forge.db")
    texts = " ".join(m["content"] for e in store.examples() for m in e.messages)
    assert "reminders_heldout" not in texts and store.counts()["total"] == 400
    store.close()


def test_demo_never_wipes_a_folder_it_did_not_make(tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.md").write_text("keep me")
    with pytest.raises(DemoError, match="not made by `forge demo`"):
        run_demo(precious, lambda s: None)
    assert (precious / "notes.md").read_text() == "keep me"
