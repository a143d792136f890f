"""The registry as the companion's requests see it: what a request's `model` names (a base, an adapter, nothing
registered), and the checked record of an adapter to load. The pool (companion/pool.py) holds which bases are loaded
and which adapters each has."""

from __future__ import annotations

import time

from companion.pool import CompanionError

_NAMES_TTL_S = 5.0
_names: dict[str, tuple[float, str | None]] = {}  # request `model` name → (when looked up, what it is)


def is_adapter(record: dict | None) -> bool:
    return bool(record) and (record.get("meta") or {}).get("kind") == "adapter"


def registered_kind(config, name: str) -> str | None:
    """What a request's `model` names in the registry: "adapter", "model" (a base to serve), or None (not a ready
    registry entry: any other name). Runs in a thread; cached a few seconds, so clients that send any model name
    (`gpt-4o`) with every request do not each cost a registry look-up."""
    if name == "base":
        return "model"  # the bundled SmolLM2, registered by its first look-up
    now = time.monotonic()
    hit = _names.get(name)
    if hit and now - hit[0] < _NAMES_TTL_S:
        return hit[1]
    from forge.store import MODEL_ID_RE, Store

    answer = None
    if MODEL_ID_RE.match(name) and ".." not in name:
        store = Store.for_workspace(config.workspace_path())
        try:
            record = store.get_model(name, missing_ok=True)
        finally:
            store.close()
        if record is not None and record.get("status") == "ready":
            answer = "adapter" if is_adapter(record) else "model"
    if len(_names) > 1024:
        _names.clear()
    _names[name] = (now, answer)
    return answer


def registered_adapter(config, name: str) -> bool:
    """Is `name` a registered adapter? (registered_kind, cached.)"""
    return registered_kind(config, name) == "adapter"


def lookup_adapter(config, adapter_id: str, verify: bool = True) -> dict:
    """The checked registry record of an adapter (file present, size and sha256 as exported). Runs in a thread."""
    from companion.settings import lookup_model

    record = lookup_model(config, adapter_id, verify)
    if not is_adapter(record):
        raise CompanionError(f"{adapter_id} is a model, not a LoRA adapter: POST /admin/reload-model serves it",
                             422, "not_an_adapter")
    _names.pop(adapter_id, None)
    return record
