"""Evaluation: metrics on known cases, and real evals of exported models through llama.cpp."""

import json
import os

import pytest

from forge import eval as ev
from forge.models import export as ex
from forge.models.base_model import bundled_gguf
from forge.store import Store

DATA = ex.Path(__file__).resolve().parents[2] / "data"


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
    rows = [json.loads(line) for line in (ex.Path(__file__).resolve().parents[3] / "data" / "demo" /
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


@pytest.fixture(scope="module")
def exported(trained_workspace):
    """The session's trained run exported (Q8_0), and the bundled base to compare it with: (store, config, run_id,
    export id, "base")."""
    store, config, run_id, _ = trained_workspace
    return (store, config, run_id, ex.export_run(store, config, run_id, "q8_0")["model_id"],
            ex.register_bundled_base(store, config)["id"])


@pytest.mark.slow
def test_eval_of_an_export_vs_the_base_stores_outputs_and_metrics(exported, tmp_path):
    store, config, _, model, other = exported
    r = ev.evaluate(store, model, other, test_file=str(prompts_file(tmp_path)), max_tokens=16, config=config)
    assert r["n"] == 4 and r["model_id"] == model and r["baseline_id"] == other
    for role in ("model", "baseline"):
        assert set(r[role]) >= {"exact_match", "rouge_l", "rouge_lsum", "bleu", "json_valid", "latency_p50_ms",
                                "tokens_per_s"}
        assert r[role]["json_valid"] is None and r[role]["latency_p50_ms"] > 0
    saved = store.evals(model)[0]
    assert saved["dataset"] == r["dataset"] and len(saved["outputs"]) == 4
    assert all({"prompt", "expected", "output"} <= set(o) for o in saved["outputs"])
    assert store.evals(other)[0]["metrics"] == r["baseline"]
    assert r["lead"] is None  # short answers are not summary-like: no extractive baseline
    assert set(r["comparisons"]) == {other} and r["headline"] == "exact_match"


@pytest.mark.slow
def test_the_base_answers_once_per_prompts_and_budget_and_later_evals_reuse_them(exported, tmp_path):
    """Evaluating a second fine-tune (here the same one again) on the same prompts does not generate the base's
    answers again: they are the stored ones, said in the summary; another budget or --rerun-baseline generates."""
    store, config, _, model, other = exported
    held = str(prompts_file(tmp_path, 3))
    first = ev.evaluate(store, model, other, test_file=held, max_tokens=12, config=config, rerun_baseline=True)
    assert first["baseline_reused"] is None and first["baseline"]["errors"] == 0
    base_rows, model_rows = len(store.evals(other)), len(store.evals(model))
    first_id = store.evals(other)[0]["id"]
    again = ev.evaluate(store, model, other, test_file=held, max_tokens=12, config=config)
    assert again["baseline_reused"]["eval_id"] == first_id
    assert any("reused" in line and "--rerun-baseline" in line for line in again["summary"])
    assert len(store.evals(model)) == model_rows + 1  # the model ran
    # saved again, so the newest rows of the two (what the Eval mode, reports and votes pair) are what was compared
    newest, firsts = store.evals(other)[0], next(e for e in store.evals(other) if e["id"] == first_id)
    assert len(store.evals(other)) == base_rows + 1 and newest["metrics"]["eval"]["reused_from"] == first_id
    assert newest["outputs"] == firsts["outputs"] and newest["dataset"] == firsts["dataset"]
    assert again["baseline"]["exact_match"] == first["baseline"]["exact_match"]
    assert set(again["comparisons"]) == {other}
    other_budget = ev.evaluate(store, model, other, test_file=held, max_tokens=13, config=config)
    assert other_budget["baseline_reused"] is None and "reused_from" not in store.evals(other)[0]["metrics"]["eval"]
    rerun = ev.evaluate(store, model, other, test_file=held, max_tokens=12, config=config, rerun_baseline=True)
    assert rerun["baseline_reused"] is None and "reused_from" not in store.evals(other)[0]["metrics"]["eval"]
    assert len(store.evals(other)) == base_rows + 3


def test_bad_inputs_are_clear_errors(tmp_path, store):
    with pytest.raises(ev.EvalError, match="--test-file"):
        ev.load_prompts()
    held = str(DATA / "eval_summaries.jsonl")
    with pytest.raises(ev.EvalError, match="--baselines 'lead3'"):
        ev.evaluate(store, "base", test_file=held, baselines="lead3")
    for bad in ("many", "0", -5):
        with pytest.raises(ev.EvalError, match="--max-tokens: give a positive whole number or 'auto'"):
            ev.evaluate(store, "base", test_file=held, max_tokens=bad)
    bad = tmp_path / "x.jsonl"
    bad.write_text("nothing useful\n")
    with pytest.raises(ev.EvalError, match="no usable examples"):
        ev.load_prompts(bad)
    assert os.environ.get("FORGE_EVAL_FAULT") is None


# ---- the extractive baseline -----------------------------------------------------------------------------------
DIALOGUE = ("Summarize this dialogue:\n\nAmanda: I baked cookies. Do you want some?\nJerry: Sure!\n"
            "[00:14] Dr. Lee: Bring some to the lab too.\nAmanda: I'll bring them tomorrow :-)")


def test_lead_units_on_messy_text():
    units, kind = ev.lead_units(DIALOGUE)  # the instruction line is not a unit; lines, not sentences
    assert kind == "lines" and units[0].startswith("Amanda: I baked") and len(units) == 4
    assert units[2].startswith("[00:14] Dr. Lee:")
    assert ev.lead(DIALOGUE, 2) == "Amanda: I baked cookies. Do you want some?\nJerry: Sure!"
    wrapped = "Summarize:\nThe bridge closes on Monday for\nrepairs. Buses take the detour.\n\nA new paragraph"
    units, kind = ev.lead_units(wrapped)  # hard-wrapped prose still splits at sentences, not lines
    assert kind == "sentences" and units == ["The bridge closes on Monday for repairs.", "Buses take the detour.",
                                             "A new paragraph"]
    bare = "buy milk eggs bread and also call the bank about the card"
    assert ev.lead_units(bare) == ([bare], "sentences") and ev.lead(bare, 3) == bare
    huge = " ".join(["word"] * 5000) + "."
    assert ev.lead_units(huge)[0] == [huge]
    assert ev.lead_units("") == ([], "sentences") and ev.lead("", 2) == "" and ev.lead("   \n\n ", 1) == ""


def test_lead_n_follows_reference_lengths_only():
    sources = ["Summarize:\nOne two three four. Five six seven eight. Nine ten eleven twelve."] * 3
    assert ev.choose_lead_n(sources, ["a b c d"] * 3) == 1
    assert ev.choose_lead_n(sources, ["a b c d e f g h"] * 3) == 2
    scrambled = ["zz yy xx ww vv uu tt ss"] * 3  # other words, same lengths: same N (the text is never read)
    assert ev.choose_lead_n(sources, scrambled) == ev.choose_lead_n(sources, ["a b c d e f g h"] * 3)
    huge = " ".join(["word"] * 5000) + "."
    assert ev.choose_lead_n([huge], ["a short summary of twenty words " * 3]) == 1  # never 0
    assert ev.choose_lead_n([""], ["anything at all"]) == 1 and ev.choose_lead_n([], []) == 1
    name, recs = ev.lead_records([{"prompt": "", "expected": "x y"}, {"prompt": sources[0], "expected": "x y"}])
    assert name == "lead-1" and [r["output"] for r in recs] == ["", "One two three four."]
    forced = ev.compare_records([dict(r, output="") for r in recs], None, None, baselines="lead-3")
    assert forced["lead"]["id"] == "lead-3" and forced["lead"]["outputs"][1] == sources[0].split("\n")[1]
    assert ev.compare_records(recs, None, None, baselines="none")["lead"] is None


def test_summary_like_is_prose_shorter_than_the_prompts():
    summaries, _ = ev.load_prompts(DATA / "eval_summaries.jsonl")
    src, refs = [p["messages"][-1]["content"] for p in summaries], [p["expected"] for p in summaries]
    assert ev.is_summary_like(src, refs) and ev.headline_metric(refs) == "rouge_l"
    reminders = [("remind me to call mom tomorrow at 5", "call mom | tomorrow at 5")] * 3
    assert not ev.is_summary_like(*zip(*reminders)) and ev.headline_metric([r[1] for r in reminders]) == "exact_match"
    long_json = ['{"summary": "the council closed the bridge for repairs until spring", "ok": true}'] * 3
    assert not ev.is_summary_like([s * 3 for s in src[:3]], long_json)
    assert ev.headline_metric(long_json) == "json_field_accuracy"
    assert not ev.is_summary_like(refs, src)  # references longer than the prompts


def test_rouge_lsum_scores_sentences_and_bleu_resamples_a_real_corpus():
    ref = "The bridge is closed. Buses take the market street."
    swapped = "Buses take the market street. The bridge is closed."
    lsum = ev.summarize([{"expected": ref, "output": swapped, "error": None, "latency_ms": 1}])
    assert lsum["rouge_lsum"] == pytest.approx(1.0) and lsum["rouge_l"] < 0.8
    preds = ["the cat sat on the mat", "a dog barked", "", "completely unrelated words"]
    refs = ["the cat sat on a mat", "the dog barked loudly", "empty output", "the quick brown fox"]
    stats = ev.example_stats(preds, refs)
    assert float(ev.score("bleu", stats["bleu"].sum(0))) == pytest.approx(ev.bleu(preds, refs))
    assert float(ev.score("rouge_l", stats["rouge_l"].sum(0))) == pytest.approx(ev.rouge_l(preds, refs))


def test_paired_bootstrap_on_metric_values():
    refs = [f"item {i} is done today" for i in range(30)]
    good = ev.example_stats(refs, refs)
    bad = ev.example_stats(["nothing"] * 30, refs)
    c = ev.paired_bootstrap(good, bad)
    assert c["exact_match"]["diff"] == 1.0 and c["exact_match"]["significant"]
    assert all(c[m]["low"] <= c[m]["diff"] <= c[m]["high"] for m in c)
    same = ev.paired_bootstrap(good, good)
    assert all((v["diff"], v["low"], v["high"], v["significant"]) == (0, 0, 0, False) for v in same.values())
    # one better answer in thirty: a difference, but not one 30 prompts can tell from noise
    one = ev.example_stats(refs[:1] + ["nothing"] * 29, refs)
    c = ev.paired_bootstrap(one, bad)["exact_match"]
    assert c["diff"] == pytest.approx(1 / 30) and c["low"] <= 0 and not c["significant"]
    assert "not significant" in ev.verdict("base", "exact_match", c)
    assert ev.paired_bootstrap(good, bad) == ev.paired_bootstrap(good, bad)  # fixed seed: the same interval


def test_auto_max_tokens_follows_the_reference_lengths():
    def count(text):
        return len(text.split())

    assert ev.auto_max_tokens(["call mom | at 5"] * 10, count) == 16  # at least 16
    long = ["w " * 100] * 39 + ["w " * 900]  # one outlier past the 95th percentile does not set the budget
    assert ev.auto_max_tokens(long, count) == 150
    assert ev.auto_max_tokens(["w " * 5000], count) == 2048  # at most 2048
    assert ev.auto_max_tokens(["", "  "], count) == 64  # no references to go by


# ---- real evaluations ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_eval_intervals_model_vs_itself_and_vs_lead(tmp_path):
    """The bundled model against itself (identical greedy outputs: difference exactly 0, interval [0, 0]) and
    against lead-N on prompts whose reference is their first sentence (lead-1 is perfect: tuned is clearly worse),
    through the real CLI, then the report."""
    from tests.forge.test_cli import forge

    ws = tmp_path / "ws"
    p = forge(ws, "eval", "base", "--baseline", "base", "--test-file", str(DATA / "eval_summaries.jsonl"), "--json")
    r = json.loads(p.stdout)
    assert r["n"] == 6 and r["lead"]["id"] == "lead-1" and r["lead"]["metrics"]["rouge_l"] == pytest.approx(1.0)
    assert 16 <= r["max_tokens"] <= 40  # auto: 1.5 × p95 of ~16-20-token references
    assert r["leaks"]["checked"] is False  # the bundled model has no training run here
    assert set(r["comparisons"]) == {"base", "lead-1"}
    for metric, c in r["comparisons"]["base"].items():
        assert (c["diff"], c["low"], c["high"], c["significant"]) == (0, 0, 0, False), metric
    vs_lead = r["comparisons"]["lead-1"]
    assert set(vs_lead) == {"exact_match", "rouge_l", "rouge_lsum", "bleu"}
    for metric, c in vs_lead.items():
        assert c["low"] <= c["diff"] <= c["high"], metric
    assert vs_lead["rouge_l"]["high"] < 0 and vs_lead["rouge_l"]["significant"]
    assert r["summary"][0].startswith("tuned vs base on ROUGE-L: +0.000 (95 % CI +0.000 … +0.000), not significant")
    assert r["summary"][1].startswith("tuned is worse than lead-1 on ROUGE-L by −")
    md, js = ev.report(Store.for_workspace(ws), "base", "base", None, tmp_path / "rep")
    text = md.read_text()
    assert "tuned is worse than lead-1 on ROUGE-L" in text and "| rouge_lsum |" in text
    report = json.loads(js.read_text())
    first = report["prompts"][0]
    assert report["comparisons"] == r["comparisons"] and first["lead"] == first["expected"]
    human = forge(ws, "eval", "base", "--baseline", "none", "--baselines", "none", "--max-tokens", "4",
                  "--test-file", str(DATA / "eval_summaries.jsonl")).stdout
    assert "rouge_lsum" in human and "lead-" not in human and "max tokens 4" in human


@pytest.mark.slow
def test_eval_excludes_prompts_the_model_trained_on(exported):
    store, config, run_id, model, _ = exported
    held = str(DATA / "eval_leaky_heldout.jsonl")  # 4 new requests, 2 paraphrases of training pairs, 1 verbatim
    r = ev.evaluate(store, model, None, test_file=held, max_tokens=4, config=config)
    assert r["leaks"]["checked"] and r["leaks"]["runs"] == [run_id]
    assert r["leaks"]["found"] == 3 and r["leaks"]["excluded"] == 3 and r["n"] == 4
    assert sorted(it["index"] for it in r["leaks"]["items"]) == [4, 5, 6]
    assert not any("dentist" in o["prompt"] for o in store.evals(model)[0]["outputs"])
    assert any("3 of 7 held-out prompts have a near-duplicate" in s and "excluded" in s for s in r["summary"])
    kept = ev.evaluate(store, model, None, test_file=held, max_tokens=4, config=config, keep_leaks=True)
    assert kept["n"] == 7 and kept["leaks"]["found"] == 3 and kept["leaks"]["excluded"] == 0
    assert any("were kept" in s for s in kept["summary"])
    m = store.evals(model)[0]
    assert m["metrics"]["eval"]["leaks"]["kept"] and len(m["outputs"]) == 7


def test_the_recipe_of_the_models_run_sets_the_eval_budget(store):
    """`forge train --recipe short-answers` then `forge eval` with the default auto budget: 32 tokens from the
    recipe, not 1.5 × the reference lengths; a recipe that says auto, or no recipe, leaves auto alone."""
    from forge.eval import recipe_max_tokens
    from forge.train.recipes import recipe_spec

    store.create_run("r-short", "/tmp/r-short", recipe_spec("short-answers"), {})
    store.create_run("r-sum", "/tmp/r-sum", recipe_spec("summaries"), {})
    store.create_run("r-none", "/tmp/r-none", {"max_steps": 2}, {})
    assert recipe_max_tokens(store, {"run_id": "r-short"}) == (32, "recipe short-answers")
    assert recipe_max_tokens(store, {"run_id": "r-sum"}) is None
    assert recipe_max_tokens(store, {"run_id": "r-none"}) is None
    assert recipe_max_tokens(store, {"run_id": "gone"}) is None  # a model whose run is not in this store
    assert recipe_max_tokens(store, {"run_id": None}) is None


def test_a_mostly_leaking_set_says_how_to_compare_requests_only():
    """97 of 100 held-out requests flagged because every example shares a system prompt: the summary names the
    setting that compares the requests only; once set (or with few leaks), it says nothing more."""
    from forge.eval import MOSTLY_LEAKS_HINT, notes

    leaks = {"checked": True, "threshold": 0.8, "text": "conversation", "found": 97, "excluded": 97}
    assert notes(leaks, None, 3)[0].endswith(MOSTLY_LEAKS_HINT) and "dedup.leak_text" in MOSTLY_LEAKS_HINT
    assert not notes({**leaks, "text": "user"}, None, 3)[0].endswith(MOSTLY_LEAKS_HINT)
    assert not notes({**leaks, "found": 2, "excluded": 2}, None, 98)[0].endswith(MOSTLY_LEAKS_HINT)
