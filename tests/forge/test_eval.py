"""Evaluation: metrics on known cases, and real evals of exported models through llama.cpp."""

import json
import os

import pytest

from forge import eval as ev
from forge import export as ex
from forge.train.base_model import bundled_gguf


def test_metrics_on_known_cases():
    assert ev.exact_match("  Call Mom |  tomorrow at 5 ", "call mom | tomorrow at 5")
    assert not ev.exact_match("call mom | tomorrow", "call mom | tomorrow at 5")
    assert ev.rouge_l(["the cat sat"], ["the cat sat"]) == pytest.approx(1.0)
    assert 0 < ev.rouge_l(["the cat sat on the mat"], ["the cat lay on a mat"]) < 1
    assert ev.rouge_l(["dog"], ["cat"]) == 0.0
    assert ev.bleu(["the quick brown fox jumps"], ["the quick brown fox jumps"]) == pytest.approx(1.0)
    assert ev.bleu(["completely different words here"], ["the quick brown fox jumps"]) < 0.1
    valid, acc = ev.json_metrics(['{"intent": "search", "city": "Oslo"}', "not json", '{"intent": "book"}'],
                                 ['{"intent": "search", "city": "Oslo"}', '{"intent": "x"}', '{"intent": "search"}'])
    assert valid == pytest.approx(2 / 3) and acc == pytest.approx(2 / 4)
    assert ev.json_metrics(["a"], ["plain text"]) == (None, None)
    m = ev.summarize([{"expected": "a | b", "output": "A |  b", "error": None, "latency_ms": 100, "completion_tokens": 5},
                      {"expected": "c | d", "output": "", "error": "timed out", "latency_ms": None,
                       "completion_tokens": 0}])
    assert m["exact_match"] == 0.5 and m["errors"] == 1 and m["latency_p50_ms"] == 100 and m["tokens_per_s"] == 50


def prompts_file(tmp_path, n=4):
    rows = [json.loads(line) for line in (ex.Path(__file__).resolve().parents[2] / "data" / "demo" /
                                          "reminders_heldout.jsonl").read_text().splitlines()[:n]]
    p = tmp_path / "held.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.mark.slow
def test_a_crash_and_a_timeout_are_recorded_and_the_rest_complete(tmp_path, monkeypatch):
    prompts, _ = ev.load_prompts(prompts_file(tmp_path, 5))
    monkeypatch.setenv("FORGE_EVAL_FAULT", "crash:1")
    recs = ev.generate_all(str(bundled_gguf()), prompts, max_tokens=8, timeout_s=30)
    assert [r["error"] is None for r in recs] == [True, False, True, True, True]
    assert "crashed" in recs[1]["error"] and all(r["output"] for r in recs if r["error"] is None)
    monkeypatch.setenv("FORGE_EVAL_FAULT", "hang:3")
    recs = ev.generate_all(str(bundled_gguf()), prompts, max_tokens=8, timeout_s=3)
    assert "timed out" in recs[3]["error"] and recs[4]["error"] is None


@pytest.mark.slow
def test_eval_of_two_exports_stores_outputs_and_metrics(trained_workspace, tmp_path):
    store, config, run_id, _ = trained_workspace
    model = ex.export_run(store, config, run_id, "q8_0")["model_id"]
    other = ex.export_run(store, config, run_id, "q4_k_m")["model_id"]
    r = ev.evaluate(store, model, other, test_file=str(prompts_file(tmp_path)), max_tokens=16)
    assert r["n"] == 4 and r["model_id"] == model and r["baseline_id"] == other
    for role in ("model", "baseline"):
        assert set(r[role]) >= {"exact_match", "rouge_l", "bleu", "json_valid", "latency_p50_ms", "tokens_per_s"}
        assert r[role]["json_valid"] is None and r[role]["latency_p50_ms"] > 0
    saved = store.evals(model)[0]
    assert saved["dataset"] == r["dataset"] and len(saved["outputs"]) == 4
    assert all({"prompt", "expected", "output"} <= set(o) for o in saved["outputs"])
    assert store.evals(other)[0]["metrics"] == r["baseline"]


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ev.EvalError, match="--test-file"):
        ev.load_prompts()
    bad = tmp_path / "x.jsonl"
    bad.write_text("nothing useful\n")
    with pytest.raises(ev.EvalError, match="no usable examples"):
        ev.load_prompts(bad)
    assert os.environ.get("FORGE_EVAL_FAULT") is None
