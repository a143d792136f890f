"""Evaluation: a registered model against a baseline on held-out prompts.

Generation runs in a child process with llama.cpp, greedy by default, through the same chat-completion path and
GGUF chat template the companion serves with; a crash or timeout on one prompt is recorded for that prompt and the
child restarts for the rest. Metrics come from kept libraries: ROUGE-L (rouge-score), BLEU (sacrebleu); exact
match after case and whitespace normalisation; JSON validity and per-field accuracy when the expected outputs are
JSON; latency p50/p95 and tokens/s. Results are stored per (model, dataset) with every output.
"""

from __future__ import annotations

import hashlib
import json
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from forge import child_env
from forge.store import Store, StoreError

Progress = Callable[[str, int, int], None]  # (model id, done, total)


class EvalError(StoreError):
    """The evaluation cannot run as asked; the message says what to change."""


# ---- metrics ----------------------------------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    return " ".join((text or "").casefold().split())


def exact_match(pred: str, ref: str) -> bool:
    return normalize_answer(pred) == normalize_answer(ref)


def rouge_l(preds: list[str], refs: list[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]
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


def json_metrics(preds: list[str], refs: list[str]) -> tuple[float | None, float | None]:
    """(share of outputs that are valid JSON objects, mean per-field accuracy) when every expected output is a JSON
    object; (None, None) otherwise."""
    parsed_refs = [_json_object(r) for r in refs]
    if not refs or any(r is None for r in parsed_refs):
        return None, None
    valid, fields = 0, []
    for p, ref in zip(preds, parsed_refs):
        obj = _json_object(p)
        valid += obj is not None
        for key, want in ref.items():
            fields.append(obj is not None and obj.get(key) == want)
    return valid / len(preds), (sum(fields) / len(fields) if fields else None)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def summarize(records: list[dict]) -> dict:
    """Metrics over one model's records ({expected, output, error, latency_ms, completion_tokens})."""
    ok = [r for r in records if r.get("error") is None]
    preds = [r["output"] if r.get("error") is None else "" for r in records]
    refs = [r["expected"] for r in records]
    json_valid, field_acc = json_metrics(preds, refs)
    latencies = [r["latency_ms"] for r in ok]
    gen_s = sum(latencies) / 1000
    return {
        "exact_match": sum(exact_match(p, r) for p, r in zip(preds, refs)) / len(records) if records else 0.0,
        "rouge_l": rouge_l(preds, refs), "bleu": bleu(preds, refs), "json_valid": json_valid,
        "json_field_accuracy": field_acc, "latency_p50_ms": percentile(latencies, 50),
        "latency_p95_ms": percentile(latencies, 95),
        "tokens_per_s": sum(r.get("completion_tokens", 0) for r in ok) / gen_s if gen_s else None,
        "errors": len(records) - len(ok),
    }


# ---- prompts ----------------------------------------------------------------------------------------------
def load_prompts(test_file: str | Path | None = None, dataset_dir: str | Path | None = None) -> tuple[list[dict], str]:
    """[{messages (up to the last user turn), expected}] and a dataset id (its content hash)."""
    from forge.extract.jsonl import extract_jsonl

    path = Path(test_file) if test_file else Path(dataset_dir) / "test.jsonl" if dataset_dir else None
    if path is None:
        raise EvalError("give held-out prompts: --test-file F (any shape forge extracts) or --dataset DIR")
    if not path.exists():
        raise EvalError(f"{path}: no such file")
    found = extract_jsonl(path, 200_000_000, 2_000_000)
    if not found.items:
        reason = found.skipped[0].reason if found.skipped else "empty"
        raise EvalError(f"{path}: no usable examples ({reason})")
    prompts = []
    for it in found.items:
        msgs = it["messages"]
        last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        expected = next((m["content"] for m in msgs[last_user + 1:] if m["role"] == "assistant"), "")
        prompts.append({"messages": msgs[:last_user + 1], "expected": expected})
    digest = hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()[:16]
    return prompts, f"{path.name}:{digest}"


# ---- generation ---------------------------------------------------------------------------------------------
def generate_all(model_path: str, prompts: list[dict], max_tokens: int = 64, timeout_s: float = 60,
                 progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """One result per prompt, from a llama.cpp child that is restarted after a crash or a timeout."""
    results: list[dict | None] = [None] * len(prompts)
    start = 0
    while start < len(prompts):
        todo = prompts[start:]
        proc = subprocess.Popen(
            [sys.executable, "-m", "forge.eval_child", model_path, str(max_tokens), str(start)],
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


def evaluate(store: Store, model_id: str, baseline: str | None = "base", test_file: str | None = None,
             dataset_dir: str | None = None, max_tokens: int = 64, timeout_s: float = 60,
             progress: Progress | None = None) -> dict:
    prompts, dataset = load_prompts(test_file, dataset_dir)
    out = {"n": len(prompts), "dataset": dataset}
    for role, mid in (("model", model_id), ("baseline", baseline)):
        if mid is None:
            continue
        model = store.get_model(mid)
        records = generate_all(model["path"], prompts, max_tokens, timeout_s,
                               (lambda d, t, m=mid: progress(m, d, t)) if progress else None)
        metrics = summarize(records)
        store.save_eval(mid, dataset, metrics, records)
        out[role] = metrics
        out[f"{role}_id"] = mid
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


def report(store: Store, model_id: str, baseline_id: str, dataset: str | None, out_dir: Path) -> tuple[Path, Path]:
    """A markdown and a JSON report of the newest comparison, with every output and the person's votes."""
    pair = latest_pair(store, model_id, baseline_id, dataset)
    if pair is None:
        raise EvalError(f"no evaluation of {model_id} and {baseline_id} on the same prompts yet")
    m, b = pair
    votes = store.votes(model_id, baseline_id, m["dataset"])
    data = {"model": model_id, "baseline": baseline_id, "dataset": m["dataset"], "metrics": {
        "model": m["metrics"], "baseline": b["metrics"]}, "votes": win_rate(votes),
        "prompts": [{"prompt": mo["prompt"], "expected": mo["expected"], "model": mo["output"], "baseline": bo["output"],
                     "vote": votes.get(i)} for i, (mo, bo) in enumerate(zip(m["outputs"], b["outputs"]))]}
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"eval-{model_id}-vs-{baseline_id}"
    jpath, mpath = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jpath.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    lines = [f"# {model_id} vs {baseline_id}", "", f"Prompts: {len(data['prompts'])} ({m['dataset']})", "",
             "| metric | model | baseline |", "|---|---|---|"]
    for k, v in m["metrics"].items():
        bv = b["metrics"].get(k)
        fmt = lambda x: "—" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))  # noqa: E731
        lines.append(f"| {k} | {fmt(v)} | {fmt(bv)} |")
    wr = data["votes"]
    lines += ["", f"Human votes: {wr['votes']} (model {wr['model']}, baseline {wr['baseline']}, tie {wr['tie']})"
              + (f", win rate {wr['win_rate']:.2f}" if wr["win_rate"] is not None else ""), ""]
    for i, p in enumerate(data["prompts"], start=1):
        lines += [f"## {i}. {p['prompt']}", f"- expected: `{p['expected']}`", f"- model: `{p['model']}`",
                  f"- baseline: `{p['baseline']}`" + (f"\n- vote: {p['vote']}" if p["vote"] else ""), ""]
    mpath.write_text("\n".join(lines))
    return mpath, jpath
