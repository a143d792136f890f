"""Evaluation: a registered model against a baseline model and an extractive baseline on held-out prompts.

Generation runs in a child process with llama.cpp, greedy by default, through the same chat-completion path and
GGUF chat template the companion serves with; a crash or timeout on one prompt is recorded for that prompt and the
child restarts for the rest. Metrics come from kept libraries: ROUGE-L and ROUGE-Lsum (rouge-score; sentences
from nltk's Punkt splitter), BLEU (sacrebleu); exact match after case and whitespace normalisation; JSON validity
and per-field accuracy when the expected outputs are JSON; latency p50/p95 and tokens/s. Results are stored per
(model, dataset) with every output.

Beside the two models: lead-N (the first N sentences, or lines of a dialogue, of the last user turn) for
summary-like tasks, and for tuned − each comparison a paired bootstrap 95 % interval on every metric
(scipy.stats.bootstrap over the prompts). Before generating, prompts with a near-duplicate in the models'
training data are excluded (forge/leakage.py), and the output budget follows the reference lengths.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from forge import child_env
from forge.store import Store, StoreError

if TYPE_CHECKING:
    from forge.config import Config

Progress = Callable[[str, int, int], None]  # (model id, or LEAK_STAGE while checking leakage; done, total)
LEAK_STAGE = "leakage check"


class EvalError(StoreError):
    """The evaluation cannot run as asked; the message says what to change."""


# ---- metrics ----------------------------------------------------------------------------------------------
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


# ---- the extractive baseline ----------------------------------------------------------------------------------
# A line that opens with a speaker tag ("Amanda: …", "[00:01] Dr. Lee: …"): the text is a dialogue or transcript.
_SPEAKER_RE = re.compile(r"^(?:\[?\d{1,2}:\d{2}(?::\d{2})?\]?\s*)?[^\s:][^:]{0,40}:\s*\S")


def lead_units(text: str) -> tuple[list[str], str]:
    """The units lead-N counts in a last user turn, and their kind: its lines when it is line-structured (at least
    two lines, half or more opening with a speaker tag; what precedes the first tagged line is an instruction),
    else its sentences (a first line ending in ':' is an instruction; lines within a paragraph are joined, so
    hard-wrapped prose still splits at sentences)."""
    lines = [ln.strip() for ln in (text or "").splitlines()]
    kept = [ln for ln in lines if ln]
    tagged = [i for i, ln in enumerate(kept) if _SPEAKER_RE.match(ln)]
    if len(tagged) >= 2 and 2 * len(tagged) >= len(kept):
        return kept[tagged[0]:], "lines"
    if len(kept) > 1 and kept[0].endswith(":"):
        lines = lines[lines.index(kept[0]) + 1:]
    paragraphs = " ".join(ln if ln else "\n" for ln in lines).split("\n")
    return [s for para in paragraphs for s in split_sentences(para)], "sentences"


def choose_lead_n(sources: list[str], refs: list[str]) -> int:
    """N for the whole held-out set: the mean reference length in words over the mean unit length in words,
    rounded, at least 1. Only the references' lengths are read, never their text."""
    unit_words = [words(u) for s in sources for u in lead_units(s)[0]]
    mean_unit = sum(unit_words) / len(unit_words) if unit_words else 0
    if not refs or not mean_unit:
        return 1
    return max(1, round(sum(words(r) for r in refs) / len(refs) / mean_unit))


def lead(text: str, n: int) -> str:
    units, kind = lead_units(text)
    return ("\n" if kind == "lines" else " ").join(units[:n])


def is_summary_like(sources: list[str], refs: list[str]) -> bool:
    """References that are prose (not JSON objects, median at least 8 words: longer than labels and extracted
    fields) and shorter than the prompts' last user turns on average."""
    if not refs or _json_rows(refs, refs) is not None:
        return False
    ref_words = [words(r) for r in refs]
    return statistics.median(ref_words) >= 8 and sum(ref_words) / len(refs) < sum(map(words, sources)) / len(sources)


def lead_records(records: list[dict], n: int | None = None) -> tuple[str, list[dict]]:
    """The lead-N baseline's records for a model's records (their prompts are the last user turns)."""
    prompts, refs = [r["prompt"] for r in records], [r["expected"] for r in records]
    n = n or choose_lead_n(prompts, refs)
    return f"lead-{n}", [{"prompt": p, "expected": e, "output": lead(p, n), "error": None, "latency_ms": None,
                          "completion_tokens": 0} for p, e in zip(prompts, refs)]


# ---- confidence ---------------------------------------------------------------------------------------------
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


# ---- prompts ----------------------------------------------------------------------------------------------
def _prompts_path(test_file, dataset_dir) -> Path:
    path = Path(test_file) if test_file else Path(dataset_dir) / "test.jsonl" if dataset_dir else None
    if path is None:
        raise EvalError("give held-out prompts: --test-file F (any shape forge extracts), --dataset DIR, or --run RUN "
                        "(the run's own held-out notes)")
    if not path.exists():
        raise EvalError(f"{path}: no such file")
    return path


def run_heldout(store: Store, run_id: str) -> tuple[Path, str | None]:
    """A run's own held-out set, with no file to name: data/test.jsonl of its folder (create_run exports it, whole
    notes held out), or data/val.jsonl with a note saying so when the test split is empty (val is never trained
    on either; the run only reports its loss on it)."""
    run = store.get_run(run_id)  # an unknown run: "no run 'X'; `forge runs` lists them"
    data = Path(run["run_dir"]) / "data"
    test, val = data / "test.jsonl", data / "val.jsonl"
    if not test.exists() and not val.exists():
        raise EvalError(f"run {run_id}: its held-out data ({data}) is gone; evaluate with --test-file instead")
    if _rows(test):
        return test, None
    n_val = _rows(val)
    if n_val:
        return val, (f"run {run_id} holds out no test examples; evaluating on its val split ({n_val} example(s), "
                     f"not trained on either, but the run reported its validation loss on them)")
    raise EvalError(f"run {run_id} holds out nothing: its test and val splits are empty (too few examples or notes "
                    f"to hold any out); evaluate with --test-file instead")


def _rows(path: Path) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return 0


def heldout_of(store: Store, test_file=None, dataset_dir=None, run_id: str | None = None) -> tuple[Path, dict | None]:
    """The held-out file to evaluate on (--test-file, --dataset or --run) and, for --run, what was taken from it:
    {run, split, file, note}."""
    if run_id is None:
        return _prompts_path(test_file, dataset_dir), None
    if test_file or dataset_dir:
        raise EvalError("--run takes the run's own held-out split: leave out --test-file and --dataset")
    path, note = run_heldout(store, run_id)
    return path, {"run": run_id, "split": path.stem, "file": str(path), "note": note}


def dataset_id(name: str, prompts: list[dict]) -> str:
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()[:16]
    return f"{name}:{digest}"


def read_heldout(path: Path, columns: dict | None = None, split: str | None = None, config: Config | None = None):
    """The examples in a held-out file, read by the extractor `forge extract` uses for its kind: JSONL in any shape,
    CSV/TSV (with the column flags and config's prompt template, as extraction applies them), Parquet/Arrow files and
    save_to_disk folders (`split` default: test, else validation, else the only one)."""
    from forge.extract import file_kind
    from forge.extract.common import ExtractError

    columns = {k: v for k, v in (columns or {}).items() if v}
    kind = file_kind(path)
    try:
        if kind == "csv":
            from forge.config import CsvConfig
            from forge.extract.tabular import extract_csv

            if split:
                raise ExtractError(f"{path} is one file with no splits: leave out --split")
            if columns.pop("messages_column", None):
                raise ExtractError(f"{path}: --messages-column is for Parquet/Arrow files and dataset folders; a "
                                   f"CSV row is a prompt and a response column")
            cfg = config.extract.csv if config is not None else CsvConfig()
            return extract_csv(path, cfg, 200_000_000, 2_000_000, **columns)
        if kind == "dataset":
            from forge.extract.dataset import HELD_OUT_SPLITS, extract_dataset

            return extract_dataset(path, 2_000_000, split=split, prefer=HELD_OUT_SPLITS, **columns)
        if columns or split:
            raise ExtractError(f"{path}: the column flags and --split apply to CSV/TSV, Parquet and "
                               f"Arrow files and dataset folders; JSONL records are read by their shape")
    except ExtractError as e:
        raise EvalError(str(e)) from e
    from forge.extract.jsonl import extract_jsonl

    return extract_jsonl(path, 200_000_000, 2_000_000)


def load_prompts(test_file: str | Path | None = None, dataset_dir: str | Path | None = None, *,
                 columns: dict | None = None, split: str | None = None,
                 config: Config | None = None) -> tuple[list[dict], str]:
    """[{messages (up to the last user turn), expected}] and a dataset id (its content hash). The test file may be in
    any format `forge extract` reads; `columns` (prompt_column, response_column, system_column, messages_column) and
    `split` as `forge extract csv|dataset` take them."""
    path = _prompts_path(test_file, dataset_dir)
    found = read_heldout(path, columns, split, config)
    if not found.items:
        reason = found.skipped[0].reason if found.skipped else "empty"
        raise EvalError(f"{path}: no usable examples ({reason})")
    prompts = []
    for it in found.items:
        msgs = it["messages"]
        last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        expected = next((m["content"] for m in msgs[last_user + 1:] if m["role"] == "assistant"), "")
        prompts.append({"messages": msgs[:last_user + 1], "expected": expected})
    return prompts, dataset_id(path.name, prompts)


# ---- guards: leakage, output length, forgetting -------------------------------------------------------------
def training_files(store: Store, model_ids: list[str]) -> list[tuple[str, Path]]:
    """(run id, train.jsonl) of each model made by a run in this workspace (create_run puts the data a run trains
    on in its data/ folder)."""
    out = []
    for mid in model_ids:
        run_id = (store.get_model(mid, missing_ok=True) or {}).get("run_id")
        if not run_id:
            continue
        try:
            path = Path(store.get_run(run_id)["run_dir"]) / "data" / "train.jsonl"
        except StoreError:
            continue
        if path.exists() and all(path != p for _, p in out):
            out.append((run_id, path))
    return out


def check_leaks(store: Store, config: Config, model_ids: list[str], prompts: list[dict],
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Held-out prompts (with their expected answers) that have a near-duplicate in the training data of the
    compared models' runs: forge/leakage.py, the Dedup model and threshold."""
    from forge.extract.jsonl import extract_jsonl
    from forge.leakage import find_leaks

    files = training_files(store, model_ids)
    if not files:
        return {"checked": False, "found": 0, "items": [], "threshold": config.dedup.threshold,
                "reason": "no model compared was trained by a run in this workspace"}
    pool = {}
    for _, path in files:
        for it in extract_jsonl(path, 2_000_000_000, 2_000_000).items:
            pool.setdefault(json.dumps(it["messages"], sort_keys=True), it["messages"])
    held = [p["messages"] + ([{"role": "assistant", "content": p["expected"]}] if p["expected"] else [])
            for p in prompts]
    leaks = find_leaks(store, held, list(pool.values()), config.dedup, progress=progress)
    return {"checked": True, "runs": [r for r, _ in files], "threshold": config.dedup.threshold,
            "text": config.dedup.leak_text, "found": len(leaks), "items": [{"index": lk.held, "similarity": round(lk.similarity, 4),
                                            "prompt": prompts[lk.held]["messages"][-1]["content"][:200]}
                                           for lk in leaks]}


AUTO_MIN_TOKENS, AUTO_MAX_TOKENS, MAX_CONTEXT = 16, 2048, 8192


def token_counter_for(config: Config) -> tuple[Callable[[str], int], str]:
    """The base model's tokenizer (forge/tokens.py: the `tokenizers` library on the base's tokenizer.json, ~0.1 s),
    or an estimate of 1.5 tokens per word when it cannot be had."""
    from forge.tokens import TokenizerUnavailable, token_counter

    try:
        return token_counter(config.workspace_path(), config.validation.tokenizer), "base tokenizer"
    except TokenizerUnavailable:
        return (lambda text: math.ceil(1.5 * words(text))), "estimate: 1.5 tokens per word"


def recipe_max_tokens(store: Store, model: dict | None) -> tuple[int, str] | None:
    """The output budget the recipe of the model's training run sets (`eval_max_tokens`), with where it came
    from; None when the model has no run, the run no recipe, or the recipe says "auto"."""
    run_id = (model or {}).get("run_id")
    if not run_id:
        return None
    try:
        spec = store.get_run(run_id)["spec"]
    except StoreError:  # a model copied in from another workspace: its run is not here
        return None
    from forge.train.recipes import RECIPES

    recipe = RECIPES.get(spec.get("recipe") or "")
    budget = recipe.spec.get("eval_max_tokens") if recipe else None
    return (int(budget), f"recipe {recipe.name}") if isinstance(budget, int) else None


def auto_max_tokens(refs: list[str], count: Callable[[str], int]) -> int:
    """1.5 × the 95th percentile of the reference lengths in tokens, at least 16, at most 2048; 64 when no prompt
    has a reference answer."""
    import numpy as np

    refs = [r for r in refs if r.strip()]
    if not refs:
        return 64
    p95 = float(np.percentile([count(r) for r in refs], 95))
    return int(min(AUTO_MAX_TOKENS, max(AUTO_MIN_TOKENS, math.ceil(1.5 * p95))))


def context_for(prompts: list[dict], max_tokens: int, count: Callable[[str], int]) -> int:
    """llama.cpp context for the eval child: the longest prompt (with ~8 tokens of template per turn) plus
    max_tokens and a margin; at least 1024, at most 8192."""
    longest = max((sum(count(m["content"]) + 8 for m in p["messages"]) for p in prompts), default=0)
    return max(1024, min(MAX_CONTEXT, longest + max_tokens + 64))


def forgetting_of(store: Store, model_id: str) -> dict | None:
    """The reference-loss check of the run that made the model (run meta "forgetting", else forgetting.json in
    its folder), or None."""
    run_id = (store.get_model(model_id, missing_ok=True) or {}).get("run_id")
    if not run_id:
        return None
    try:
        run = store.get_run(run_id)
    except StoreError:
        return None
    found = run["meta"].get("forgetting")
    path = Path(run["run_dir"]) / "forgetting.json"
    if not found and path.exists():
        try:
            found = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            found = None
    return found if isinstance(found, dict) and {"loss_before", "loss_after"} <= set(found) else None


MOSTLY_LEAKS_HINT = ("; when every example shares a long system prompt or answer format, compare the requests only: "
                     "set dedup.leak_text to user")


def notes(leaks: dict | None, forgetting: dict | None, n: int) -> list[str]:
    """Sentences on the guards: leakage found and what was done, the forgetting check and its warning."""
    out = []
    if leaks and leaks.get("checked"):
        total, found = n + leaks.get("excluded", 0), leaks["found"]
        if not found:
            out.append(f"leakage: none of the {total} held-out prompts has a near-duplicate in the training data "
                       f"(cosine ≥ {leaks['threshold']:.2f})")
        elif leaks.get("excluded"):
            out.append(f"leakage: {found} of {total} held-out prompts have a near-duplicate in the training data "
                       f"(cosine ≥ {leaks['threshold']:.2f}) and were excluded; scores are on the other {n}"
                       + (MOSTLY_LEAKS_HINT if 2 * found > total and leaks.get("text") == "conversation" else ""))
        else:
            out.append(f"leakage: {found} of {total} held-out prompts have a near-duplicate in the training data "
                       f"(cosine ≥ {leaks['threshold']:.2f}) and were kept (--keep-leaks): scores may be inflated")
    elif leaks:
        out.append(f"leakage: not checked ({leaks.get('reason', 'unknown')})")
    if forgetting:
        line = (f"forgetting: loss on the general reference set {forgetting['loss_before']:.3f} → "
                f"{forgetting['loss_after']:.3f}")
        if forgetting.get("change") is not None:
            line += f" (change {signed(forgetting['change'])})"
        if forgetting.get("warn"):
            line += (f" — WARNING: over the threshold {forgetting.get('threshold')}; the tuned model may have lost "
                     f"general ability")
        out.append(line)
    return out


# ---- generation ---------------------------------------------------------------------------------------------
def generate_all(model_path: str, prompts: list[dict], max_tokens: int = 64, timeout_s: float = 60,
                 progress: Callable[[int, int], None] | None = None, n_ctx: int = 1024,
                 lora: str | None = None) -> list[dict]:
    """One result per prompt, from a llama.cpp child that is restarted after a crash or a timeout; with `lora` (a
    GGUF LoRA adapter of the model) the child applies it, as the companion does for a request naming it."""
    results: list[dict | None] = [None] * len(prompts)
    start = 0
    while start < len(prompts):
        todo = prompts[start:]
        proc = subprocess.Popen(
            [sys.executable, "-m", "forge.eval_child", model_path, str(max_tokens), str(start), str(n_ctx),
             *([lora] if lora else [])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=child_env())
        proc.stdin.write(json.dumps([p["messages"] for p in todo]))
        proc.stdin.close()
        index = start
        deadline = time.monotonic() + timeout_s + 60  # the first prompt also pays the model load
        while index < len(prompts):
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else None
            if line:
                results[index] = json.loads(line)
                index += 1
                deadline = time.monotonic() + timeout_s
                if progress:
                    progress(index, len(prompts))
                continue
            timed_out = not ready
            proc.kill()
            proc.wait()
            results[index] = {"output": "", "error": (f"timed out after {timeout_s:.0f} s" if timed_out else
                                                      f"llama.cpp crashed (exit {proc.returncode})"),
                              "latency_ms": None, "completion_tokens": 0}
            index += 1
            if progress:
                progress(index, len(prompts))
            break
        else:
            proc.wait()
        start = index
    return [dict(r, expected=p["expected"], prompt=p["messages"][-1]["content"]) for r, p in zip(results, prompts)]


BASELINE_MODES = ("auto", "lead", "none")


def weights_of(store: Store, model: dict) -> tuple[str, str | None]:
    """(GGUF to load, LoRA adapter to apply or None) for a registered model: an adapter (`forge export --adapter`)
    runs as its base plus itself, as the companion serves it."""
    if (model.get("meta") or {}).get("kind") != "adapter":
        return model["path"], None
    base_id = model["meta"].get("base_id")
    base = store.get_model(base_id, missing_ok=True) if base_id else None
    if base is None:
        raise EvalError(f"{model['id']} is a LoRA adapter of {base_id or 'an unknown base'}, which is not in the "
                        f"registry: register that base GGUF (or re-export the adapter with --base) to evaluate it")
    if (base.get("meta") or {}).get("kind") == "adapter":
        raise EvalError(f"{model['id']}: its base {base_id} is itself an adapter; re-export it with --base")
    return base["path"], model["path"]


def evaluate(store: Store, model_id: str, baseline: str | None = "base", test_file: str | None = None,
             dataset_dir: str | None = None, max_tokens: int | str = "auto", timeout_s: float = 60,
             progress: Progress | None = None, *, config: Config | None = None, baselines: str = "auto",
             keep_leaks: bool = False, columns: dict | None = None, split: str | None = None,
             run_id: str | None = None) -> dict:
    """Generate with the model and the baseline model on the held-out prompts, store both, and compare. The
    prompts come from test_file, dataset_dir's test.jsonl, or run_id's own held-out split (run_heldout).

    Before generating: prompts with a near-duplicate in the training data of the compared models' runs are
    excluded (kept with keep_leaks, and counted either way); max_tokens="auto" is 1.5 × the 95th percentile of
    the reference lengths in the base model's tokens (16…2048). `baselines`: 'auto' adds the lead-N extractive
    baseline for summary-like tasks, 'lead' always, 'lead-3' always with N = 3, 'none' never."""
    from forge.config import Config

    if baselines not in BASELINE_MODES and not re.fullmatch(r"lead-[1-9]\d*", baselines):
        raise EvalError(f"--baselines {baselines!r}: use one of {', '.join(BASELINE_MODES)}, or lead-N for a fixed N")
    if max_tokens != "auto":
        try:
            max_tokens = int(max_tokens)
        except (TypeError, ValueError):
            max_tokens = 0
        if max_tokens < 1:
            raise EvalError("--max-tokens: give a positive whole number or 'auto'")
    config = config or Config(workspace=str(store.path.parent))
    path, heldout = heldout_of(store, test_file, dataset_dir, run_id)
    prompts, _ = load_prompts(path, columns=columns, split=split, config=config)
    roles = [(role, mid) for role, mid in (("model", model_id), ("baseline", baseline)) if mid is not None]
    models = {mid: store.get_model(mid) for _, mid in roles}  # an unknown id fails before any work
    weights = {mid: weights_of(store, m) for mid, m in models.items()}  # so does an adapter whose base is gone
    leaks = check_leaks(store, config, list(models), prompts,
                        (lambda d, t: progress(LEAK_STAGE, d, t)) if progress else None)
    leaks["kept"] = bool(keep_leaks)
    leaks["excluded"] = 0 if keep_leaks else leaks["found"]
    if leaks["excluded"]:
        leaked = {it["index"] for it in leaks["items"]}
        if len(leaked) == len(prompts):
            raise EvalError(f"{path}: all {len(prompts)} held-out prompts have a near-duplicate in the training "
                            f"data; evaluate on prompts the model did not train on (or pass --keep-leaks)"
                            + (MOSTLY_LEAKS_HINT if config.dedup.leak_text == "conversation" else ""))
        prompts = [p for i, p in enumerate(prompts) if i not in leaked]
    count, counted_by = token_counter_for(config)
    if max_tokens == "auto" and (from_recipe := recipe_max_tokens(store, models.get(model_id))):
        max_tokens, counted_by = from_recipe
    if max_tokens == "auto":
        max_tokens = auto_max_tokens([p["expected"] for p in prompts], count)
    elif not counted_by.startswith("recipe"):
        counted_by = "given"
    n_ctx = context_for(prompts, max_tokens, count)
    dataset = dataset_id(path.name, prompts)
    info = {"max_tokens": max_tokens, "max_tokens_from": counted_by, "n_ctx": n_ctx, "baselines": baselines,
            "leaks": {k: v for k, v in leaks.items() if k != "items"}}
    out = {"n": len(prompts), "dataset": dataset, "max_tokens": max_tokens, "leaks": leaks, "heldout": heldout}
    records = {}
    for role, mid in roles:
        gguf, lora = weights[mid]
        records[role] = generate_all(gguf, prompts, max_tokens, timeout_s,
                                     (lambda d, t, m=mid: progress(m, d, t)) if progress else None, n_ctx=n_ctx,
                                     lora=lora)
        metrics = {**summarize(records[role]), "eval": info}
        store.save_eval(mid, dataset, metrics, records[role])
        out[role] = metrics
        out[f"{role}_id"] = mid
    c = compare_records(records["model"], records.get("baseline"), baseline, baselines)
    forgetting = forgetting_of(store, model_id)
    out.update(lead=c["lead"], comparisons=c["vs"], headline=c["headline"], forgetting=forgetting,
               summary=c["sentences"] + notes(leaks, forgetting, len(prompts)))
    return out


def win_rate(votes: dict[int, str]) -> dict:
    n = len(votes)
    wins = sum(v == "model" for v in votes.values())
    ties = sum(v == "tie" for v in votes.values())
    return {"votes": n, "model": wins, "baseline": n - wins - ties, "tie": ties,
            "win_rate": (wins + 0.5 * ties) / n if n else None}


def latest_pair(store: Store, model_id: str, baseline_id: str, dataset: str | None = None) -> tuple[dict, dict] | None:
    """The newest stored evals of model and baseline on the same dataset."""
    for m in store.evals(model_id):
        if dataset and m["dataset"] != dataset:
            continue
        b = next((e for e in store.evals(baseline_id) if e["dataset"] == m["dataset"]), None)
        if b:
            return m, b
    return None


_COMPARED: dict[tuple, dict] = {}


def comparison(store: Store, m: dict, b: dict | None) -> dict:
    """What the Eval summary shows for two stored eval rows (b may be None): the lead-N baseline, tuned − each
    comparison with 95 % intervals, the sentences, and the leakage and forgetting notes. Recomputed from the
    stored outputs (deterministic: fixed seed), once per pair of rows."""
    key = (str(store.path), m["id"], m["created_at"], b and b["id"], b and b["created_at"])
    if key not in _COMPARED:
        info = m["metrics"].get("eval") or {}
        _COMPARED[key] = compare_records(m["outputs"], b["outputs"] if b else None, b["model_id"] if b else None,
                                         info.get("baselines", "auto"))
    c = dict(_COMPARED[key])
    leaks = (m["metrics"].get("eval") or {}).get("leaks")
    c["leaks"], c["forgetting"] = leaks, forgetting_of(store, m["model_id"])
    c["notes"] = notes(leaks, c["forgetting"], len(m["outputs"]))
    return c


def fmt_value(x) -> str:
    return "—" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


def fmt_interval(c: dict | None) -> str:
    """'+0.120 (+0.080 … +0.160) *' — the star marks an interval that excludes 0."""
    if c is None:
        return "—"
    return f"{signed(c['diff'])} ({signed(c['low'])} … {signed(c['high'])})" + (" *" if c["significant"] else "")


def report(store: Store, model_id: str, baseline_id: str, dataset: str | None, out_dir: Path) -> tuple[Path, Path]:
    """A markdown and a JSON report of the newest comparison, with every output and the person's votes."""
    pair = latest_pair(store, model_id, baseline_id, dataset)
    if pair is None:
        raise EvalError(f"no evaluation of {model_id} and {baseline_id} on the same prompts yet")
    m, b = pair
    c = comparison(store, m, b)
    lead_info = c["lead"]
    votes = store.votes(model_id, baseline_id, m["dataset"])
    data = {"model": model_id, "baseline": baseline_id, "dataset": m["dataset"], "metrics": {
        "model": m["metrics"], "baseline": b["metrics"], **({lead_info["id"]: lead_info["metrics"]} if lead_info
                                                            else {})},
        "comparisons": c["vs"], "summary": c["sentences"] + c["notes"], "leaks": c["leaks"],
        "forgetting": c["forgetting"], "votes": win_rate(votes),
        "prompts": [{"prompt": mo["prompt"], "expected": mo["expected"], "model": mo["output"], "baseline": bo["output"],
                     **({"lead": lead_info["outputs"][i]} if lead_info else {}), "vote": votes.get(i)}
                    for i, (mo, bo) in enumerate(zip(m["outputs"], b["outputs"]))]}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{model_id}-vs-{baseline_id}"
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    others = list(c["vs"])
    lines = [f"# {model_id} vs {baseline_id}", "", f"Prompts: {len(data['prompts'])} ({m['dataset']})", ""]
    lines += [f"- {s}" for s in data["summary"]] + [""]
    head = ["metric", "model", "baseline"] + ([lead_info["id"]] if lead_info else []) + [f"model − {o} (95 % CI)"
                                                                                          for o in others]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, v in m["metrics"].items():
        if k == "eval":
            continue
        cells = [fmt_value(v), fmt_value(b["metrics"].get(k))]
        cells += [fmt_value(lead_info["metrics"].get(k))] if lead_info else []
        cells += [fmt_interval(c["vs"][o].get(k)) if k in QUALITY else "" for o in others]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "\\* the 95 % interval (paired bootstrap, 1000 resamples) excludes 0", ""]
    wr = data["votes"]
    lines += [f"Human votes: {wr['votes']} (model {wr['model']}, baseline {wr['baseline']}, tie {wr['tie']})"
              + (f", win rate {wr['win_rate']:.2f}" if wr["win_rate"] is not None else ""), ""]
    for i, p in enumerate(data["prompts"], start=1):
        lines += [f"## {i}. {p['prompt']}", f"- expected: `{p['expected']}`", f"- model: `{p['model']}`",
                  f"- baseline: `{p['baseline']}`"]
        if "lead" in p:
            lines.append(f"- {lead_info['id']}: `{p['lead']}`")
        lines += ([f"- vote: {p['vote']}"] if p["vote"] else []) + [""]
    mpath.write_text("\n".join(lines))
    return mpath, jpath
