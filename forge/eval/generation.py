"""Generation for an eval: a registered model on the held-out prompts in a llama.cpp child
(`python -m forge.eval.eval_child`), greedy by default, through the same chat-completion path and GGUF chat template
the companion serves with; a crash or timeout on one prompt is recorded for that prompt and the child restarts for
the rest. `evaluate` runs the whole eval: guards, both models, the stored results and the comparisons."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from forge import child_env
from forge.eval.heldout import (MOSTLY_LEAKS_HINT, EvalError, auto_max_tokens, check_leaks, context_for, dataset_id,
                                forgetting_of, heldout_of, load_prompts, notes, recipe_max_tokens, token_counter_for,
                                training_answers, written_by_the_person)
from forge.eval.intervals import compare_records
from forge.eval.metrics import summarize
from forge.eval.systems import baseline_model, template_check, template_notes, tokenizer_of, weights_of
from forge.store import Store

if TYPE_CHECKING:
    from forge.config import Config


Progress = Callable[[str, int, int], None]  # (model id, or LEAK_STAGE while checking leakage; done, total)
LEAK_STAGE = "leakage check"
VOICE_STAGE = "voice judge"


def judge_voice(store: Store, records: dict, model_id: str, baseline: str | None, label: str | None = None) -> dict:
    """The voice judge on one eval's outputs: the references are the person's texts, the systems are the tuned model
    and the baseline (named "tuned" and "base" when the baseline is the base; `label`: the baseline's name when it
    is not its registry id), the training notes of the model's run are what copying is checked against."""
    from forge.eval.voice import judge

    systems = {"tuned": [r["output"] for r in records["model"]]}
    if "baseline" in records:
        systems[label or ("base" if baseline == "base" else baseline)] = [r["output"] for r in records["baseline"]]
    names = {"tuned": model_id, **({n: baseline for n in systems if n != "tuned"} if baseline else {})}
    try:
        result = judge([r["expected"] for r in records["model"]], systems,
                       training_texts=training_answers(store, model_id))
    except Exception as e:  # noqa: BLE001 - the generations are stored whatever the judge does
        return {"error": f"{type(e).__name__}: {e}", "names": names,
                "summary": f"The voice could not be judged: {type(e).__name__}: {e}"}
    result["names"] = names
    return result


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
            [sys.executable, "-m", "forge.eval.eval_child", model_path, str(max_tokens), str(start), str(n_ctx),
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
    return [dict(r, expected=p["expected"], prompt=p["messages"][-1]["content"], messages=p["messages"])
            for r, p in zip(results, prompts)]


BASELINE_MODES = ("auto", "lead", "none")


def evaluate(store: Store, model_id: str, baseline: str | None = "base", test_file: str | None = None,
             dataset_dir: str | None = None, max_tokens: int | str = "auto", timeout_s: float = 60,
             progress: Progress | None = None, *, config: Config | None = None, baselines: str = "auto",
             keep_leaks: bool = False, columns: dict | None = None, split: str | None = None,
             run_id: str | None = None, voice: bool | None = None, rerun_baseline: bool = False) -> dict:
    """Generate with the model and the baseline model on the held-out prompts, store both, and compare. The
    prompts come from test_file, dataset_dir's test.jsonl, or run_id's own held-out split (run_heldout).

    `baseline` "base" is the model's own base, as that base's GGUF in the registry (forge.eval.systems.own_base:
    the bundled SmolLM2 is `base`, Gemma 3 270M `gemma3-270m`); its results are stored under that id
    (`baseline_id`) and named "base" in the comparisons. A base id of `forge models bases` is registered when
    named. Before generating: prompts with a near-duplicate in the training data of the compared models' runs are
    excluded (kept with keep_leaks, and counted either way); max_tokens="auto" is 1.5 × the 95th percentile of
    the reference lengths in the model's own tokens (its run's tokenizer, else the workspace's base tokenizer;
    16…2048); each system whose GGUF's chat template is not its own or its export's checked one (an adapter on its
    base, a base given Gemma's turns) is checked to render the first held-out prompts to the tokens it was trained
    with (`template`; a mismatch is a warning in the summary). `baselines`: 'auto' adds the lead-N extractive
    baseline for summary-like tasks, 'lead' always, 'lead-3' always with N = 3, 'none' never.

    `voice`: the voice judge (forge/eval/voice.py: does each system write like the person, does it copy, does it
    loop), stored with the model's metrics as "voice". None (auto) runs it when the held-out texts are the person's
    own notes (written_by_the_person); True on any held-out set; False never.

    The baseline's answers are reused (`baseline_reused`, and a line in the summary) from its newest stored eval that
    had no errors and was generated from the same GGUF and adapter files (path, size, modification time: the
    decoding defaults live in them), on the same prompts, with the same token budget and context, by the same
    llama-cpp-python and generating code; a base does not change between two trainings, so evaluating each new
    fine-tune does not pay for the base again. A reused baseline is saved again (`reused_from`), so the newest rows
    of the two systems are what was compared (the Eval mode, reports and votes pair those). rerun_baseline
    generates them anew."""
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
    tuned = store.get_model(model_id)  # an unknown id fails before any work
    label = baseline
    if baseline is not None:  # so does a base with no GGUF to compare with
        baseline = baseline_model(store, config, tuned, baseline)
    roles = [(role, mid) for role, mid in (("model", model_id), ("baseline", baseline)) if mid is not None]
    models = {mid: store.get_model(mid) for _, mid in roles}
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
    count, counted_by = token_counter_for(config, tokenizer_of(store, tuned))
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
    names = {"model": "tuned", "baseline": label}
    templates = {names[role]: template_check(store, models[mid], weights[mid][0], prompts) for role, mid in roles}
    info["template"] = templates
    out = {"n": len(prompts), "dataset": dataset, "max_tokens": max_tokens, "leaks": leaks, "heldout": heldout,
           "systems": {names[role]: {"id": mid, "gguf": weights[mid][0], "lora": weights[mid][1]}
                       for role, mid in roles}, "template": templates}
    records, metrics, reused = {}, {}, None
    for role, mid in roles:
        gguf, lora = weights[mid]
        made_by = answers_key(gguf, lora, max_tokens, n_ctx)
        if role == "baseline" and not rerun_baseline and (earlier := reusable_eval(store, mid, dataset, made_by)):
            records[role] = earlier["outputs"]
            metrics[role] = {**{k: v for k, v in earlier["metrics"].items() if k not in ("eval", "voice")},
                             "eval": {**info, "answers_of": made_by, "reused_from": earlier["id"]}}
            reused = {"eval_id": earlier["id"], "created_at": earlier["created_at"],
                      "when": earlier["created_at"][:16].replace("T", " ") + " UTC"}
            if progress:
                progress(mid, len(prompts), len(prompts))
            continue
        records[role] = generate_all(gguf, prompts, max_tokens, timeout_s,
                                     (lambda d, t, m=mid: progress(m, d, t)) if progress else None, n_ctx=n_ctx,
                                     lora=lora)
        metrics[role] = {**summarize(records[role]), "eval": {**info, "answers_of": made_by}}
    if voice or (voice is None and written_by_the_person(path)):
        if progress:
            progress(VOICE_STAGE, 0, 1)
        metrics["model"]["voice"] = judge_voice(store, records, model_id, baseline, label)
        if progress:
            progress(VOICE_STAGE, 1, 1)
    for role, mid in roles:  # a reused baseline is saved again, so the newest rows pair exactly what was compared
        store.save_eval(mid, dataset, metrics[role], records[role])
        out[role] = metrics[role]
        out[f"{role}_id"] = mid
    out["baseline_name"] = label
    out["voice"] = metrics["model"].get("voice")
    c = compare_records(records["model"], records.get("baseline"), label, baselines)
    forgetting = forgetting_of(store, model_id)
    out.update(lead=c["lead"], comparisons=c["vs"], headline=c["headline"], forgetting=forgetting,
               summary=c["sentences"] + notes(leaks, forgetting, len(prompts)) + template_notes(templates)
               + ([f"{label}: its answers are reused from its eval of {reused['when']} (the same GGUF, "
                   f"prompts and token budget); --rerun-baseline generates them again"] if reused else []),
               baseline_reused=reused)
    return out


def answers_key(gguf: str, lora: str | None, max_tokens: int, n_ctx: int) -> dict:
    """What a system's answers depend on besides the prompts: its files as they are now (a re-export or a new
    registration changes the size or the time; the chat template and decoding defaults live in them), the
    generation budget, and the generator (llama.cpp's version and forge's generating code)."""
    def stamp(path: str | None) -> list | None:
        if not path:
            return None
        try:
            st = Path(path).stat()
        except OSError:  # a missing file: nothing matches it, and generating records the error per prompt
            return [str(path), None, None]
        return [str(Path(path).resolve()), st.st_size, st.st_mtime_ns]

    return {"gguf": stamp(gguf), "lora": stamp(lora), "max_tokens": max_tokens, "n_ctx": n_ctx,
            "generator": generator_version()}


@functools.cache
def generator_version() -> str:
    """llama-cpp-python's version and a digest of the code that turns prompts into answers."""
    from importlib.metadata import version
    from importlib.util import find_spec

    digest = hashlib.sha256()
    for module in ("forge.eval.eval_child", "forge.models.llama_child", "forge.eval.metrics"):
        digest.update(Path(find_spec(module).origin).read_bytes())
    return f"llama-cpp-python {version('llama_cpp_python')} · {digest.hexdigest()[:12]}"


def reusable_eval(store: Store, model_id: str, dataset: str, made_by: dict) -> dict | None:
    """model_id's newest stored eval on `dataset` whose answers were made as they would be now, without errors."""
    for e in store.evals(model_id, dataset):  # newest first
        if e["metrics"].get("eval", {}).get("answers_of") == made_by and not e["metrics"].get("errors"):
            return e  # the dataset id hashes the prompts themselves, so the answers line up one for one
    return None
