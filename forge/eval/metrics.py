"""The quality metrics of an eval, from kept libraries: ROUGE-L and ROUGE-Lsum (rouge-score; sentences from
nltk's Punkt splitter), BLEU (sacrebleu); exact match after case and whitespace normalisation; JSON validity and
per-field accuracy when the expected outputs are JSON; latency p50/p95 and tokens/s (`summarize`). `example_stats`
gives the per-example statistics a paired bootstrap resamples (forge/eval/intervals.py)."""

from __future__ import annotations

import json
import re
import statistics


QUALITY = ("exact_match", "rouge_l", "rouge_lsum", "bleu", "json_valid", "json_field_accuracy")
NAMES = {"exact_match": "exact match", "rouge_l": "ROUGE-L", "rouge_lsum": "ROUGE-Lsum", "bleu": "BLEU",
         "json_valid": "JSON validity", "json_field_accuracy": "JSON field accuracy"}
_WORD_RE = re.compile(r"\w+")


def words(text: str) -> int:
    return len(_WORD_RE.findall(text or ""))


def normalize_answer(text: str) -> str:
    return " ".join((text or "").casefold().split())


def exact_match(pred: str, ref: str) -> bool:
    return normalize_answer(pred) == normalize_answer(ref)


def split_sentences(text: str) -> list[str]:
    """Sentences, for rougeLsum: lines, then nltk's Punkt splitter within each line. Punkt runs untrained (no
    downloaded model: forge never downloads at run time), so it splits at every sentence-final mark and may split
    after abbreviations such as "Mr."."""
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    punkt = PunktSentenceTokenizer()
    return [s for line in (text or "").splitlines() for s in punkt.tokenize(line.strip()) if s.strip()]


def _rouge_scores(preds: list[str], refs: list[str]) -> tuple[list[float], list[float]]:
    """Per-example ROUGE-L and ROUGE-Lsum F1 (rouge-score; rougeLsum reads sentences from newlines)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL", "rougeLsum"], use_stemmer=False)
    rl, rls = [], []
    for p, r in zip(preds, refs):
        s = scorer.score("\n".join(split_sentences(r)), "\n".join(split_sentences(p)))
        rl.append(s["rougeL"].fmeasure)
        rls.append(s["rougeLsum"].fmeasure)
    return rl, rls


def rouge_l(preds: list[str], refs: list[str]) -> float:
    scores = _rouge_scores(preds, refs)[0]
    return sum(scores) / len(scores) if scores else 0.0


def bleu(preds: list[str], refs: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(preds, [refs]).score / 100 if preds else 0.0


def _json_object(text: str):
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def _json_rows(preds: list[str], refs: list[str]) -> list[tuple[int, int, int]] | None:
    """Per example (output is a JSON object, fields right, fields expected) when every expected output is a JSON
    object; None otherwise."""
    parsed_refs = [_json_object(r) for r in refs]
    if not refs or any(r is None for r in parsed_refs):
        return None
    rows = []
    for p, ref in zip(preds, parsed_refs):
        obj = _json_object(p)
        rows.append((obj is not None, sum(obj is not None and obj.get(k) == v for k, v in ref.items()), len(ref)))
    return rows


def json_metrics(preds: list[str], refs: list[str]) -> tuple[float | None, float | None]:
    """(share of outputs that are valid JSON objects, per-field accuracy over all expected fields) when every
    expected output is a JSON object; (None, None) otherwise."""
    rows = _json_rows(preds, refs)
    if rows is None:
        return None, None
    fields = sum(r[2] for r in rows)
    return sum(r[0] for r in rows) / len(rows), (sum(r[1] for r in rows) / fields if fields else None)


_BLEU = None


def _bleu_metric():
    global _BLEU
    if _BLEU is None:
        from sacrebleu.metrics import BLEU

        _BLEU = BLEU()  # corpus_bleu's defaults
    return _BLEU


def example_stats(preds: list[str], refs: list[str]) -> dict:
    """metric → an (examples × k) array of per-example statistics whose column sums give the corpus value
    (`score`). Means are (value, 1); JSON field accuracy is (fields right, fields); BLEU is sacrebleu's own
    per-sentence n-gram counts (what sacrebleu's paired significance test resamples), so the BLEU of any
    resample is a true corpus BLEU. Computed once; a bootstrap only re-sums rows."""
    import numpy as np

    ones = np.ones(len(preds))
    rl, rls = _rouge_scores(preds, refs)
    out = {"exact_match": np.column_stack([[exact_match(p, r) for p, r in zip(preds, refs)], ones]),
           "rouge_l": np.column_stack([rl, ones]), "rouge_lsum": np.column_stack([rls, ones]),
           "bleu": np.array(_bleu_metric()._extract_corpus_statistics(preds, [refs]), dtype=float).reshape(
               len(preds), -1)}
    rows = _json_rows(preds, refs)
    if rows is not None:
        out["json_valid"] = np.column_stack([[r[0] for r in rows], ones])
        if sum(r[2] for r in rows):
            out["json_field_accuracy"] = np.array([r[1:] for r in rows], dtype=float)
    return out


def score(metric: str, sums):
    """The metric from summed per-example statistics; sums may be (k,) or (resamples, k)."""
    import numpy as np

    sums = np.asarray(sums, dtype=float)
    if metric == "bleu":
        flat = sums.reshape(-1, sums.shape[-1])
        values = [_bleu_metric()._compute_score_from_stats(row.tolist()).score / 100 for row in flat]
        return np.array(values).reshape(sums.shape[:-1])
    return np.divide(sums[..., 0], sums[..., 1], out=np.zeros(sums.shape[:-1]), where=sums[..., 1] > 0)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def outputs_of(records: list[dict]) -> list[str]:
    return [r["output"] if r.get("error") is None else "" for r in records]


def summarize(records: list[dict]) -> dict:
    """Metrics over one model's records ({expected, output, error, latency_ms, completion_tokens})."""
    ok = [r for r in records if r.get("error") is None]
    refs = [r["expected"] for r in records]
    stats = example_stats(outputs_of(records), refs) if records else {}
    quality = {m: (float(score(m, stats[m].sum(0))) if m in stats else None) for m in QUALITY}
    if not records:
        quality.update(exact_match=0.0, rouge_l=0.0, rouge_lsum=0.0, bleu=0.0)
    latencies = [r["latency_ms"] for r in ok if r.get("latency_ms") is not None]
    gen_s = sum(latencies) / 1000
    return {
        **quality, "latency_p50_ms": percentile(latencies, 50), "latency_p95_ms": percentile(latencies, 95),
        "tokens_per_s": sum(r.get("completion_tokens", 0) for r in ok) / gen_s if gen_s else None,
        "errors": len(records) - len(ok),
    }
