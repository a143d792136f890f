"""Eval: a registered model against a baseline model and lead-N on held-out prompts, with paired 95 % intervals.
Open `generation` first (`evaluate`: the guards, generation in a llama.cpp child, the stored results), then `metrics`,
`baselines` (lead-N), `intervals` (the comparisons), `heldout` (prompts and guards), `systems` (what "base" is for a
model, its tokenizer, its template check), `reports` and `voice` (does the model write like the person).

Callers use the names below from here (`from forge import eval as ev; ev.evaluate(...)`). Each is loaded from its
module on first use, so the eval child (`python -m forge.eval.eval_child`) starts without the rest of the package."""

from __future__ import annotations

import importlib

EXPORTS = {
    "metrics": ("NAMES", "QUALITY", "bleu", "exact_match", "example_stats", "json_metrics", "normalize_answer",
                "outputs_of", "percentile", "rouge_l", "score", "split_sentences", "summarize", "words"),
    "baselines": ("choose_lead_n", "is_summary_like", "lead", "lead_records", "lead_units"),
    "intervals": ("compare_records", "headline_metric", "paired_bootstrap", "signed", "verdict"),
    "heldout": ("AUTO_MAX_TOKENS", "AUTO_MIN_TOKENS", "MAX_CONTEXT", "MOSTLY_LEAKS_HINT", "EvalError",
                "auto_max_tokens", "check_leaks", "context_for", "dataset_id", "forgetting_of", "heldout_of",
                "load_prompts", "notes", "read_heldout", "recipe_max_tokens", "run_heldout", "token_counter_for",
                "training_answers", "training_files", "written_by_the_person"),
    "generation": ("BASELINE_MODES", "LEAK_STAGE", "VOICE_STAGE", "Progress", "evaluate", "generate_all", "judge_voice"),
    "reports": ("comparison", "fmt_interval", "fmt_value", "latest_pair", "report", "win_rate"),
    "systems": ("baseline_model", "own_base", "template_check", "tokenizer_of", "trained_on", "weights_of"),
}
_HOME = {name: module for module, names in EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value  # once: later lookups (and monkeypatch.setattr) find it here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
