"""What each system of an eval runs on, beyond its weights: the baseline `base` (the base the model was trained on,
as that base's own GGUF in the registry: the bundled SmolLM2 is `base`, Gemma 3 270M is `gemma3-270m`), the tokenizer
that counts its tokens, and whether the chat template its GGUF applies gives the tokens it trained with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from forge.errors import BaseModelError, ForgeError
from forge.eval.heldout import EvalError
from forge.store import Store, StoreError

if TYPE_CHECKING:
    from forge.config import Config

BASE = "base"
"""The baseline name that means "the model's own base" (and the bundled SmolLM2's registry id)."""
TEMPLATE_PROMPTS = 4
"""Held-out prompts rendered both ways by the template check (seconds: a tokenizer load and a vocabulary-only
llama.cpp load)."""


def _run_dir(store: Store, model: dict) -> Path | None:
    run_id = model.get("run_id")
    if not run_id:
        return None
    try:
        return Path(store.get_run(run_id)["run_dir"])
    except StoreError:  # a model copied in from another workspace: its run is not here
        return None


def trained_on(store: Store, model: dict) -> dict | None:
    """{base_model, base_path} of the base a model was made from: its run's adapter description when the run is
    here, else its GGUF's provenance (`forge.base_model`), else a registered base's own id; None when nothing says
    (an imported GGUF, the bundled base)."""
    run_dir = _run_dir(store, model)
    if run_dir is not None:
        try:
            info = json.loads((run_dir / "adapter" / "forge_adapter.json").read_text())
            if info.get("base_model") or info.get("base_path"):
                return {"base_model": info.get("base_model") or "", "base_path": info.get("base_path") or ""}
        except (OSError, ValueError):
            pass
    meta = model.get("meta") or {}
    name = (meta.get("provenance") or {}).get("forge.base_model") or meta.get("base_model")
    return {"base_model": name, "base_path": meta.get("base_path") or ""} if name else None


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


def own_base(store: Store, config: Config, model: dict) -> str:
    """Registry id of the GGUF of the base `model` was trained on, registered now when it is a base of
    forge.models.bases not registered yet: an adapter's own base; for a merged export, the base its run trained
    on; the bundled `base` when nothing says (an imported GGUF, `base` itself)."""
    from forge.models import export as ex

    meta = model.get("meta") or {}
    if meta.get("kind") == "adapter":
        weights_of(store, model)  # its base must be registered: one line saying so otherwise
        return meta["base_id"]
    info = trained_on(store, model)
    if info is None:
        return ex.register_bundled_base(store, config)["id"]
    try:
        return ex.adapter_base(store, config, info)["id"]
    except ForgeError as e:  # ExportError: no GGUF of that base; BaseModelError: its package is gone
        name = info["base_model"] or info["base_path"]
        why = str(e) if isinstance(e, BaseModelError) else "which has no GGUF in the registry to compare with"
        raise EvalError(f"{model['id']} was trained on {name}, {why}; register a GGUF of it with `forge models add "
                        f"FILE --id ID` and pass --baseline ID, or --baseline none") from None


def registered_base(store: Store, model: dict | None) -> str | None:
    """own_base without registering anything: the registry id of the model's own base when it is registered (for
    finding stored evals against "base"), else None."""
    meta = (model or {}).get("meta") or {}
    if meta.get("kind") == "adapter" and meta.get("base_id"):
        return meta["base_id"]
    info = trained_on(store, model) if model else None
    name = (info or {}).get("base_model")
    return name if name and store.get_model(name, missing_ok=True) else None


def baseline_model(store: Store, config: Config, model: dict, baseline: str) -> str:
    """The registry id a baseline name stands for: `base` → the model's own base (own_base); the id of a base of
    forge.models.bases (`forge models bases`) → its GGUF, registered now if need be; anything else as given."""
    if baseline == BASE:
        return own_base(store, config, model)
    if store.get_model(baseline, missing_ok=True) is None:
        from forge.models import bases
        from forge.models import export as ex

        try:
            known = bases.get_base(baseline, config.workspace_path())
        except BaseModelError as e:
            raise EvalError(str(e)) from None
        if known is not None:
            return ex.register_base(store, config, baseline)["id"]
    return baseline


def tokenizer_of(store: Store, model: dict) -> Path | None:
    """The folder of the tokenizer a model's tokens are counted with: its run's (what it trained with), else its
    base's materialised folder (a registered base, or an adapter's base); None: the workspace's default."""
    candidates = []
    run_dir = _run_dir(store, model)
    if run_dir is not None:
        candidates.append(run_dir / "adapter")
    meta = model.get("meta") or {}
    if meta.get("kind") == "adapter" and meta.get("base_id"):
        meta = (store.get_model(meta["base_id"], missing_ok=True) or {}).get("meta") or {}
    if meta.get("base_path"):
        candidates.append(Path(meta["base_path"]))
    return next((c for c in candidates if (c / "tokenizer.json").exists()), None)


def template_source(store: Store, model: dict) -> tuple[Path, str] | None:
    """(HF folder whose tokenizer holds the chat template to match, what it is) for a system whose GGUF's template
    must be checked here: an adapter (it runs on its base's GGUF and that GGUF's template) against its run's
    tokenizer; a registered base whose GGUF carries a template forge chose (Gemma's turns, ChatML) against its
    materialised tokenizer. None: a merged export (checked when exported), or a GGUF whose template is its own."""
    meta = model.get("meta") or {}
    if meta.get("kind") == "adapter":
        run_dir = _run_dir(store, model)
        folder = run_dir / "adapter" if run_dir is not None else None
        return (folder, "its training run's") if folder and (folder / "tokenizer_config.json").exists() else None
    from forge.models.bases import TEMPLATES

    if meta.get("chat_template") in TEMPLATES and meta.get("base_path"):
        folder = Path(meta["base_path"])
        if (folder / "tokenizer_config.json").exists():
            return folder, "the materialised base's"
    return None


def template_check(store: Store, model: dict, gguf: str, prompts: list[dict]) -> dict | None:
    """Whether the chat template llama.cpp applies for this system (the template in `gguf`) gives the same tokens
    as the one it was trained (or materialised) with, on the first TEMPLATE_PROMPTS held-out prompts:
    {ok, problems, prompts, checked_by}; a merged export reports its export's check. None: nothing to compare (the
    GGUF's own template, an imported GGUF)."""
    meta = model.get("meta") or {}
    if meta.get("kind") != "adapter" and meta.get("provenance"):
        if meta.get("template_parity") is None:
            return None
        parity = meta.get("parity") or {}
        return {"ok": bool(meta["template_parity"]), "problems": parity.get("problems") or [],
                "prompts": parity.get("prompts"), "checked_by": "export"}
    source = template_source(store, model)
    if source is None:
        return None
    from forge.models.export import template_parity
    from forge.models.llama_child import ChildFailed

    folder, what = source
    try:
        parity = template_parity(folder, Path(gguf), [p["messages"] for p in prompts[:TEMPLATE_PROMPTS]])
    except (ChildFailed, OSError, ValueError) as e:  # the eval goes on; the summary says it was not checked
        return {"ok": None, "problems": [f"{type(e).__name__}: {e}"[:300]], "prompts": 0, "checked_by": "eval",
                "against": what}
    return {"ok": parity["ok"], "problems": parity["problems"], "prompts": parity["prompts"], "checked_by": "eval",
            "against": what}


def template_notes(checks: dict[str, dict | None]) -> list[str]:
    """One sentence per system whose template was checked."""
    out = []
    for name, c in checks.items():
        if not c:
            continue
        when = "when it was exported" if c["checked_by"] == "export" else f"on {c['prompts']} held-out prompts"
        like = "the base's tokenizer (the one its runs train with)" if c.get("against") == "the materialised base's" \
            else "training"
        if c["ok"] is None:
            out.append(f"template: {name}'s chat template could not be checked: {'; '.join(c['problems'])}")
        elif c["ok"]:
            out.append(f"template: {name}'s GGUF renders the prompts token for token as {like} does (checked {when})")
        else:
            out.append(f"template: WARNING: {name}'s GGUF renders the prompts differently from {like} (checked "
                       f"{when}): {'; '.join(c['problems'])[:300]}; its scores may not reflect the model")
    return out
