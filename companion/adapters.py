"""LoRA adapters in the registry, as the companion sees them: which request names an adapter, and the checked record
of one to load. The pool (companion/pool.py) holds which adapters the serving base has loaded."""

from __future__ import annotations

import time

from companion.pool import CompanionError

_NAMES_TTL_S = 5.0
_names: dict[str, tuple[float, bool]] = {}  # request `model` name → (when looked up, is a registered adapter)


def is_adapter(record: dict | None) -> bool:
    return bool(record) and (record.get("meta") or {}).get("kind") == "adapter"


def registered_adapter(config, name: str) -> bool:
    """Is `name` a registered adapter? Runs in a thread; cached a few seconds, so clients that send any model
    name (`gpt-4o`) with every request do not each cost a registry look-up."""
    now = time.monotonic()
    hit = _names.get(name)
    if hit and now - hit[0] < _NAMES_TTL_S:
        return hit[1]
    from forge.store import Store

    store = Store.for_workspace(config.workspace_path())
    try:
        answer = is_adapter(store.get_model(name, missing_ok=True))
    finally:
        store.close()
    if len(_names) > 1024:
        _names.clear()
    _names[name] = (now, answer)
    return answer


def lookup_adapter(config, adapter_id: str, verify: bool = True) -> dict:
    """The checked registry record of an adapter (file present, size and sha256 as exported). Runs in a thread."""
    from companion.settings import lookup_model

    record = lookup_model(config, adapter_id, verify)
    if not is_adapter(record):
        raise CompanionError(f"{adapter_id} is a model, not a LoRA adapter: POST /admin/reload-model serves it",
                             422, "not_an_adapter")
    _names.pop(adapter_id, None)
    return record
