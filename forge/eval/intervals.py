"""Tuned − each comparison (the base model, lead-N) on every metric with a paired bootstrap 95 % interval
(scipy.stats.bootstrap over the prompts), and the sentences the Eval summary says about them."""

from __future__ import annotations

import re
import statistics

from forge.eval.baselines import is_summary_like, lead_records, lead_units
from forge.eval.metrics import (NAMES, QUALITY, _json_object, _json_rows, example_stats, outputs_of, score, summarize,
                                words)


def paired_bootstrap(a: dict, b: dict, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """metric → {diff, low, high, significant} for a − b, from `example_stats` of two systems on the same prompts.

    scipy.stats.bootstrap resamples the prompt indices with replacement (one resample serves both systems: a
    paired bootstrap), percentile interval, fixed seed; each resample's difference is the metric of a's rows
    minus the metric of b's rows, so corpus-level BLEU is recomputed on the resampled corpus."""
    import numpy as np
    from scipy.stats import bootstrap

    out = {}
    for metric in (m for m in QUALITY if m in a and m in b):
        sa, sb = a[metric], b[metric]

        def diff(idx, axis=-1, sa=sa, sb=sb, metric=metric):
            idx = np.asarray(idx, dtype=int)
            return score(metric, sa[idx].sum(-2)) - score(metric, sb[idx].sum(-2))

        d = float(diff(np.arange(len(sa))))
        if len(sa) < 2:
            low = high = d
        else:
            ci = bootstrap((np.arange(len(sa)),), diff, n_resamples=n_resamples, confidence_level=level,
                           method="percentile", vectorized=True, batch=200, rng=np.random.default_rng(seed)
                           ).confidence_interval
            low, high = float(ci.low), float(ci.high)
        out[metric] = {"diff": d, "low": low, "high": high, "significant": bool(low > 0 or high < 0)}
    return out


def signed(x: float) -> str:
    return f"{x:+.3f}".replace("-", "−")


def headline_metric(refs: list[str]) -> str:
    """The metric the summary's sentences are about: field accuracy for JSON, exact match for short answers,
    ROUGE-L for longer text."""
    if _json_rows(refs, refs) is not None:
        return "json_field_accuracy" if any(_json_object(r) for r in refs) else "json_valid"
    return "exact_match" if refs and statistics.median(words(r) for r in refs) < 8 else "rouge_l"


def verdict(other: str, metric: str, c: dict) -> str:
    """One sentence: whether the tuned model beats `other` on `metric`, by how much, and how sure."""
    ci = f"95 % CI {signed(c['low'])} … {signed(c['high'])}"
    if not c["significant"]:
        return f"tuned vs {other} on {NAMES[metric]}: {signed(c['diff'])} ({ci}), not significant"
    word = "beats" if c["diff"] > 0 else "is worse than"
    return f"tuned {word} {other} on {NAMES[metric]} by {signed(c['diff'])} ({ci})"


def compare_records(model_records: list[dict], baseline_records: list[dict] | None, baseline_id: str | None,
                    baselines: str = "auto") -> dict:
    """The comparisons the Eval summary shows: the lead-N baseline when the task is summary-like (or forced with
    baselines='lead', or with a fixed N by 'lead-3'; 'none' never), and tuned − each comparison on every metric
    with a paired 95 % interval."""
    prompts, refs = [r["prompt"] for r in model_records], [r["expected"] for r in model_records]
    stats = example_stats(outputs_of(model_records), refs)
    others: dict[str, list[dict]] = {}
    if baseline_records is not None and baseline_id:
        others[baseline_id] = baseline_records
    out = {"lead": None, "vs": {}, "headline": headline_metric(refs), "sentences": []}
    forced = re.fullmatch(r"lead-(\d+)", baselines)
    show_lead = baselines == "lead" or forced or (baselines == "auto" and is_summary_like(prompts, refs))
    if show_lead and model_records:
        name, recs = lead_records(model_records, int(forced.group(1)) if forced else None)
        others[name] = recs
        units = {lead_units(p)[1] for p in prompts}
        out["lead"] = {"id": name, "n": int(name.split("-")[1]), "unit": "/".join(sorted(units)),
                       "metrics": summarize(recs), "outputs": [r["output"] for r in recs]}
    for other, recs in others.items():
        if len(recs) != len(model_records):
            continue  # not the same prompts: no paired comparison
        c = paired_bootstrap(stats, example_stats(outputs_of(recs), refs))
        out["vs"][other] = c
        metric = out["headline"] if out["headline"] in c else "rouge_l"
        out["sentences"].append(verdict(other, metric, c[metric]))
    return out
