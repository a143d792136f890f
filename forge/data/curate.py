"""The curation actions a person takes, each one committed decision in the store's log."""

from __future__ import annotations

from forge.config import Config
from forge.data.validate import normalize_messages, validate_messages
from forge.store import Store, StoreError


class InvalidExample(StoreError):
    """The example cannot be approved as it stands; the message names the problem."""


def problems(store: Store, example_id: int, config: Config) -> list[str]:
    ex = store.get(example_id)
    return validate_messages(ex.messages, config.validation.max_tokens, config.validation.tokenizer)


def approve(store: Store, example_id: int, config: Config) -> int:
    found = problems(store, example_id, config)
    if found:
        raise InvalidExample(f"example {example_id} cannot be approved: {found[0]}")
    return store.set_status(example_id, "approved")


def reject(store: Store, example_id: int, reason: str | None = None) -> int:
    return store.set_status(example_id, "rejected", reason)


def edit(store: Store, example_id: int, messages: list[dict]) -> int:
    """Replace the conversation. Empty turns and broken role order are refused; the old text stays in the log."""
    messages = normalize_messages(messages)
    empty = [i for i, m in enumerate(messages, start=1) if not m["content"].strip()]
    if empty:
        raise InvalidExample(f"turn {empty[0]} is empty; write something or cancel the edit")
    found = validate_messages(messages, max_length=10**9)
    if found:
        raise InvalidExample(found[0])
    return store.edit(example_id, messages)
