"""Approved examples → train/val/test JSONL with a manifest. The split is a seeded shuffle of the examples in
content-hash order, so it depends only on the data and the seed, never on ids or insertion order."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timezone
from pathlib import Path

from forge import __version__
from forge.config import Config
from forge.store import Store, StoreError, canonical_messages
from forge.validate import validate_messages

SPLITS = ("train", "val", "test")


class DatasetError(StoreError):
    """The dataset cannot be exported as asked; the message says what to change."""


def split_sizes(n: int, val: float, test: float) -> tuple[int, int, int]:
    if val < 0 or test < 0 or val + test >= 1:
        raise DatasetError(f"--val {val} and --test {test} must be ≥ 0 and add up to less than 1")
    n_test = round(n * test)
    n_val = round(n * val)
    if n_test + n_val >= n and n > 0:  # tiny datasets: keep at least one training example
        n_val = max(0, n - 1 - n_test)
        n_test = min(n_test, n - 1 - n_val)
    return n - n_val - n_test, n_val, n_test


def split(keys: list[str], val: float, test: float, seed: int) -> dict[str, list[str]]:
    """Disjoint train/val/test lists of the given keys (content hashes)."""
    order = sorted(set(keys))
    random.Random(seed).shuffle(order)
    n_train, n_val, n_test = split_sizes(len(order), val, test)
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def to_record(messages: list[dict], fmt: str, example_id: int) -> dict:
    if fmt == "chat":
        return {"messages": messages}
    system = [m["content"] for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) != 2:
        raise DatasetError(f"example {example_id} has {len(turns)} turns; the alpaca format holds one exchange "
                           f"(use --format chat)")
    rec = {"instruction": turns[0]["content"], "input": "", "output": turns[1]["content"]}
    if system:
        rec["system"] = system[0]
    return rec


def dataset_hash(messages_list: list[list[dict]]) -> str:
    h = hashlib.sha256()
    for canon in sorted(canonical_messages(m) for m in messages_list):
        h.update(canon.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def export_dataset(store: Store, out: str | Path, config: Config, val: float | None = None,
                   test: float | None = None, seed: int | None = None, fmt: str | None = None) -> dict:
    d = config.dataset
    val = d.val if val is None else val
    test = d.test if test is None else test
    seed = d.seed if seed is None else seed
    fmt = fmt or d.format
    if fmt not in ("chat", "alpaca"):
        raise DatasetError(f"unknown format {fmt!r}: use chat or alpaca")
    examples = store.examples(status="approved")
    if not examples:
        raise DatasetError("no approved examples to export; approve some first (`a` in the TUI or `forge approve ID`)")
    for ex in examples:
        found = validate_messages(ex.messages, config.validation.max_tokens, config.validation.tokenizer)
        if found:
            raise DatasetError(f"approved example {ex.id} is invalid: {found[0]}; edit or reject it")
    by_hash = {}
    for ex in examples:  # identical content approved twice counts once
        by_hash.setdefault(ex.content_hash, ex)
    parts = split(list(by_hash), val, test, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in SPLITS:
        tmp = out / f"{name}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for h in sorted(parts[name], key=lambda k: by_hash[k].id):
                ex = by_hash[h]
                f.write(json.dumps(to_record(ex.messages, fmt, ex.id), ensure_ascii=False) + "\n")
        tmp.replace(out / f"{name}.jsonl")
        counts[name] = len(parts[name])
    digest = dataset_hash([ex.messages for ex in by_hash.values()])
    manifest = {
        **counts, "dataset_hash": digest, "format": fmt, "seed": seed, "val_fraction": val,
        "test_fraction": test, "forge_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ids": {name: sorted(by_hash[h].id for h in parts[name]) for name in SPLITS},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {**counts, "dataset_hash": digest}
