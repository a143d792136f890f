"""The Eval summary and report of stored evals: the newest pair of a model and its baseline on the same prompts,
their comparison (recomputed from the stored outputs), the person's votes, and a markdown and a JSON report."""

from __future__ import annotations

import json
from pathlib import Path

from forge.eval.heldout import EvalError, forgetting_of, notes
from forge.eval.intervals import compare_records, signed
from forge.eval.metrics import QUALITY
from forge.eval.systems import BASE, registered_base
from forge.eval.voice import panel
from forge.store import Store


def win_rate(votes: dict[int, str]) -> dict:
    n = len(votes)
    wins = sum(v == "model" for v in votes.values())
    ties = sum(v == "tie" for v in votes.values())
    return {"votes": n, "model": wins, "baseline": n - wins - ties, "tie": ties,
            "win_rate": (wins + 0.5 * ties) / n if n else None}


def latest_pair(store: Store, model_id: str, baseline_id: str, dataset: str | None = None) -> tuple[dict, dict] | None:
    """The newest stored evals of model and baseline on the same dataset. Baseline "base" is the model's own base
    (as Eval compares with it: Gemma's GGUF for a model trained on Gemma), else the bundled `base`."""
    if baseline_id == BASE:
        own = registered_base(store, store.get_model(model_id, missing_ok=True))
        if own and own != BASE:
            return _latest_pair(store, model_id, own, dataset) or _latest_pair(store, model_id, BASE, dataset)
    return _latest_pair(store, model_id, baseline_id, dataset)


def _latest_pair(store: Store, model_id: str, baseline_id: str, dataset: str | None) -> tuple[dict, dict] | None:
    for m in store.evals(model_id):
        if dataset and m["dataset"] != dataset:
            continue
        b = next(iter(store.evals(baseline_id, m["dataset"])), None)
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
        "model": {k: v for k, v in m["metrics"].items() if k != "voice"}, "baseline": b["metrics"], **({lead_info["id"]: lead_info["metrics"]} if lead_info
                                                            else {})},
        "comparisons": c["vs"], "summary": c["sentences"] + c["notes"], "leaks": c["leaks"],
        "forgetting": c["forgetting"], "votes": win_rate(votes),
        "voice": m["metrics"].get("voice") if panel(m["metrics"].get("voice"), baseline_id) else None,
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
        if k in ("eval", "voice"):
            continue
        cells = [fmt_value(v), fmt_value(b["metrics"].get(k))]
        cells += [fmt_value(lead_info["metrics"].get(k))] if lead_info else []
        cells += [fmt_interval(c["vs"][o].get(k)) if k in QUALITY else "" for o in others]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "\\* the 95 % interval (paired bootstrap, 1000 resamples) excludes 0", ""]
    if data["voice"]:
        lines += ["## Your voice", "", panel(data["voice"], baseline_id), ""]
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
