"""The model's own drafts of the person's notes (`forge prefs draft`): for every approved example whose answer the
person wrote (a vault note), the model answers the note's prompt as it is served (greedy unless the model carries
decoding defaults), in a llama.cpp child that survives a crash; the drafts are stored, and each becomes the
rejected side of a self-play pair (forge/data/preferences.py, SPIN: the person's text over the model's)."""

from __future__ import annotations

from typing import Callable

from forge.data.preferences import PERSON_SOURCES, split_answer
from forge.eval.generation import generate_all
from forge.eval.systems import weights_of
from forge.eval.heldout import EvalError, auto_max_tokens, context_for, token_counter_for
from forge.store import Store


def draft(store: Store, config, model_id: str = "base", limit: int | None = None, max_tokens: int | None = None,
          timeout_s: float = 60, progress: Callable[[int, int], None] | None = None) -> dict:
    """Draft answers with `model_id` (a registered model; an adapter runs on its base) to the prompts of the
    approved notes, store them, and return {"model_id", "drafted", "failed", "max_tokens", "skipped"}. `limit`
    takes the first N notes by id; max_tokens None: 1.5 × the 95th percentile of the notes' lengths."""
    model = store.get_model(model_id, missing_ok=True)
    if model is None:
        raise EvalError(f"no model {model_id!r} in the registry: `forge models` lists them (the bundled base is "
                        f"`base` once registered)")
    todo = []
    for ex in store.examples(status="approved"):
        if ex.source_kind not in PERSON_SOURCES:
            continue
        parts = split_answer(ex.messages)
        if parts:
            todo.append((ex.id, parts[0], parts[1]))
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        raise EvalError("no approved notes of yours to draft answers for: import a vault and approve its notes")
    count, _ = token_counter_for(config)
    prompts = [{"messages": prompt, "expected": note} for _, prompt, note in todo]
    max_tokens = max_tokens or auto_max_tokens([note for _, _, note in todo], count)
    gguf, lora = weights_of(store, model)
    records = generate_all(gguf, prompts, max_tokens, timeout_s, progress, n_ctx=context_for(prompts, max_tokens,
                                                                                             count), lora=lora)
    drafts = {eid: (prompt, r["output"]) for (eid, prompt, _), r in zip(todo, records)
              if not r.get("error") and r["output"].strip()}
    store.save_drafts(model_id, drafts)
    return {"model_id": model_id, "drafted": len(drafts), "failed": len(todo) - len(drafts),
            "max_tokens": max_tokens}
