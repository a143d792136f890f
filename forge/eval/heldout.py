"""What an eval runs on and the guards around it: held-out prompts read by the extractor `forge extract` uses for
their kind, prompts with a near-duplicate in the models' training data (forge/data/leakage.py), the output budget
from the reference lengths or the run's recipe, and the run's forgetting check."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from forge.eval.intervals import signed
from forge.eval.metrics import words
from forge.store import Store, StoreError

if TYPE_CHECKING:
    from forge.config import Config


class EvalError(StoreError):
    """The evaluation cannot run as asked; the message says what to change."""


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
    from forge.data.extract import file_kind
    from forge.data.extract.common import ExtractError

    columns = {k: v for k, v in (columns or {}).items() if v}
    kind = file_kind(path)
    try:
        if kind == "csv":
            from forge.config import CsvConfig
            from forge.data.extract.tabular import extract_csv

            if split:
                raise ExtractError(f"{path} is one file with no splits: leave out --split")
            if columns.pop("messages_column", None):
                raise ExtractError(f"{path}: --messages-column is for Parquet/Arrow files and dataset folders; a "
                                   f"CSV row is a prompt and a response column")
            cfg = config.extract.csv if config is not None else CsvConfig()
            return extract_csv(path, cfg, 200_000_000, 2_000_000, **columns)
        if kind == "dataset":
            from forge.data.extract.dataset import HELD_OUT_SPLITS, extract_dataset

            return extract_dataset(path, 2_000_000, split=split, prefer=HELD_OUT_SPLITS, **columns)
        if columns or split:
            raise ExtractError(f"{path}: the column flags and --split apply to CSV/TSV, Parquet and "
                               f"Arrow files and dataset folders; JSONL records are read by their shape")
    except ExtractError as e:
        raise EvalError(str(e)) from e
    from forge.data.extract.jsonl import extract_jsonl

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
    compared models' runs: forge/data/leakage.py, the Dedup model and threshold."""
    from forge.data.extract.jsonl import extract_jsonl
    from forge.data.leakage import find_leaks

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


def token_counter_for(config: Config, tokenizer: Path | None = None) -> tuple[Callable[[str], int], str]:
    """The model's tokenizer: `tokenizer` (a folder with tokenizer.json: the model's run's, or its base's), else the
    workspace's base tokenizer (forge/data/tokens.py: the `tokenizers` library on the base's tokenizer.json, ~0.1 s);
    an estimate of 1.5 tokens per word when neither can be had."""
    from forge.data.tokens import TokenizerUnavailable, token_counter

    try:
        if tokenizer is not None:
            return token_counter(config.workspace_path(), str(tokenizer)), "model tokenizer"
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


def written_by_the_person(path: Path) -> bool:
    """Are these held-out texts the person's own notes? The dataset export beside them says so: its manifest
    (forge dataset export, or a run's data/) counts the vault notes in each split, and most of this split's
    examples are notes (a note's chunks count once, so notes >= half the examples means mostly notes)."""
    try:
        manifest = json.loads((Path(path).parent / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    split = Path(path).stem
    n_notes = (manifest.get("notes") or {}).get(split) or 0
    return n_notes > 0 and 2 * n_notes >= (manifest.get(split) or 0)


def training_answers(store: Store, model_id: str) -> list[str] | None:
    """The assistant turns the model's run trained on (its data/train.jsonl), for the voice judge's copying check;
    None when the model was not trained here."""
    files = training_files(store, [model_id])
    if not files:
        return None
    out = []
    with open(files[0][1], encoding="utf-8") as f:
        for line in f:
            try:
                messages = json.loads(line).get("messages") or []
            except (ValueError, AttributeError):
                continue
            out += [m.get("content") or "" for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    return out

