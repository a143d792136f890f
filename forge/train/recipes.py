"""Recipes: the train-spec defaults a kind of task needs, as data. `forge train --recipe NAME` and the Train
mode's recipe select start from them; anything set explicitly (--spec, --set, the form) wins.

Each recipe sets the length policy (max_seq_len, truncation), the learning rate, the epochs and the output budget
for `forge eval`. The figures they reach are in the README's recipe table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from forge.train.spec import SpecError

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class TaskRecipe:
    name: str
    doc: str
    spec: dict
    note_tokens: int | None = None
    """For a vault imported for this recipe (the import dialog's checkbox, `forge extract obsidian --recipe`): notes
    are split into chunks of at most this many tokens, so every chunk fits the recipe's max_seq_len whole."""
    per_base: dict[str, dict] = field(default_factory=dict)
    """Spec fields that differ on one base (its registry id, `forge models bases`), measured on that base: a run
    on it takes them in place of the recipe's own; anything set explicitly still wins."""


RECIPES: dict[str, TaskRecipe] = {r.name: r for r in [
    TaskRecipe(
        "short-answers",
        "Short structured replies to short requests (extraction, classification, reminders → `task | when`). "
        "Rows are short, so the length is measured (auto) and the rare over-long example is dropped rather than "
        "cut: a cut request usually loses the detail the answer copies. A high learning rate over two epochs "
        "suits a 135M model learning a fixed format (a third epoch scored lower and forgot more); 32 output "
        "tokens are plenty.",
        {"max_seq_len": "auto", "truncation": "drop", "learning_rate": 1e-3, "epochs": 2.0,
         "eval_max_tokens": 32},
    ),
    TaskRecipe(
        "summaries",
        "Long inputs, short-to-medium outputs (dialogue or meeting summaries). The length covers 98 % of the "
        "examples; the rest are cut in the middle of the longest user turn, never in the summary. A lower "
        "learning rate over two epochs keeps the base model's fluency; the eval budget follows the reference "
        "summaries' lengths.",
        {"max_seq_len": "auto", "truncation": "middle-of-user", "learning_rate": 5e-4, "epochs": 2.0,
         "eval_max_tokens": "auto"},
    ),
    TaskRecipe(
        "style",
        "Rewriting or answering in a voice (your notes' tone, a house style): long outputs where every token "
        "is trained on. Cut inputs, never outputs; a gentle learning rate for two epochs, so the style moves "
        "without the model forgetting its general ability (the forgetting check watches this); 256 output tokens.",
        {"max_seq_len": "auto", "truncation": "middle-of-user", "learning_rate": 2e-4, "epochs": 2.0,
         "eval_max_tokens": 256},
    ),
    TaskRecipe(
        "voice",
        "Your own notes, so the model writes like you (a vault's notes, a diary, letters). Notes are imported in "
        "chunks of at most 224 tokens that train whole at 256, and every token of a chunk is the person's: one "
        "epoch at a high rate. Measured on Pepys's diary (520 chunks, 16 held out): a style classifier told the "
        "tuned answers from his 88 % of the time (base 100 %), none looped (base 25 %), none copied 12+ words, in "
        "~5 min of CPU training; a second epoch gave the same 88 % and more forgetting. It samples (temperature "
        "0.7, top-p 0.9) with a repetition penalty and a fixed seed: greedy decoding of a small model loops (41 of "
        "42 answers on a real vault), and the seed keeps one answer per prompt.",
        {"max_seq_len": 256, "truncation": "middle-of-user", "learning_rate": 1e-3, "epochs": 1.0,
         "eval_max_tokens": 200,
         "decoding": {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.15, "seed": 0}},
        note_tokens=224,
    ),
]}


class RecipeError(SpecError):
    """An unknown recipe; the message lists the known ones."""


def recipe_spec(name: str | None, base: str | None = None) -> dict:
    """The spec fields recipe `name` sets for a run on `base` (a registry id; None: the bundled one), with `recipe`
    itself; {} for None."""
    if not name:
        return {}
    if name not in RECIPES:
        raise RecipeError(f"recipe {name!r} is not one of {', '.join(RECIPES)}")
    from forge.models.base_model import DEFAULT_BASE

    recipe = RECIPES[name]
    return {**recipe.spec, **recipe.per_base.get(base or DEFAULT_BASE, {}), "recipe": name}


def reference_path() -> Path:
    """The bundled general reference set of the forgetting check (scripts/make_reference_data.py writes it)."""
    return REPO_ROOT / "data" / "reference" / "general.jsonl"
