"""Approved examples → train/val/test JSONL with a manifest. The split is a seeded shuffle of the examples in
content-hash order, so it depends only on the data and the seed, never on ids or insertion order. It holds out notes,
not chunks: every example from one vault note (a long note becomes several) lands in the same split, so no part of a
held-out note is trained on; any other example is a group of its own. Then val and test examples with a
near-duplicate in train (a paraphrase scores as if it were unseen) move into train with the rest of their note,
reported in the manifest's `leaks`, unless the caller keeps them."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime, timezone
from pathlib import Path

from forge import __version__
from forge.config import Config
from forge.data.validate import validate_messages
from forge.store import Store, StoreError, canonical_messages

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


def note_of(ex) -> str | None:
    """The group an example is held out with: the note it came from (every chunk of a long vault note shares its
    source file), or None for an example that is a group of its own (CSV rows, JSONL records, generated ones)."""
    return f"note:{ex.source_kind}:{ex.note_path}" if ex.note_path else None


def split(keys: list[str], val: float, test: float, seed: int,
          groups: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Disjoint train/val/test lists of the given keys (content hashes). `groups` maps a key to its group (its
    note, see note_of); all keys of a group land in one split, and a key with no group is a group of its own.

    The groups, in the order of their smallest key, are shuffled with the seed. Walking that order, a group goes to
    test when it brings test's example count closer to its target (split_sizes of all the examples), else to val
    likewise, else to train; never so that train would be left empty. So val and test come as near the requested
    fractions as whole groups allow (a note with more than about twice a split's target examples stays in train).
    With no group of two or more keys this is exactly the plain shuffle of the keys: test its first n_test, val
    the next n_val."""
    by_group: dict[str, list[str]] = {}
    for k in sorted(set(keys)):  # a group label ("note:…") never looks like a content hash (hex)
        by_group.setdefault((groups or {}).get(k, k), []).append(k)
    order = list(by_group.values())  # in the order of their smallest key, as their keys are sorted
    random.Random(seed).shuffle(order)
    n = sum(len(ks) for ks in order)
    _, n_val, n_test = split_sizes(n, val, test)
    parts: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    held = 0
    for ks in order:
        for name, target in (("test", n_test), ("val", n_val)):
            have = len(parts[name])
            if abs(have + len(ks) - target) < abs(have - target) and held + len(ks) < n:
                parts[name] += ks
                held += len(ks)
                break
        else:
            parts["train"] += ks
    return parts


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


def move_leaks(store: Store, by_hash: dict, parts: dict[str, list[str]], config: Config, keep: bool,
               groups: dict[str, str] | None = None) -> dict:
    """Val and test examples with a near-duplicate in train (forge/data/leakage.py: cosine ≥ dedup.threshold, or the
    same text after normalisation; pairs marked "keep all" in Dedup do not count). Unless `keep`, they move into
    train, transitively: what stays held out has no near-duplicate in the final training split. A leaked example
    takes the rest of its group (`groups`, as split() takes them: its note) into train with it, so a note is never
    split between train and a held-out split; those are listed in `with_note`, and the transitive check counts them
    as training data too. Changes `parts` in place; returns the report for the manifest."""
    from forge.data.leakage import find_leaks

    held = [(name, h) for name in ("test", "val") for h in parts[name]]
    train = parts["train"]
    distinct = store.distinct_pairs()
    held_ids, train_ids = [by_hash[h].id for _, h in held], [by_hash[h].id for h in train]
    label = [(groups or {}).get(h, h) for _, h in held]

    def ignore(i: int, j: int) -> bool:
        a, b = sorted((held_ids[i], train_ids[j]))
        return (a, b) in distinct

    leaks = find_leaks(store, [by_hash[h].messages for _, h in held], [by_hash[h].messages for h in train],
                       config.dedup, transitive=not keep, ignore=ignore if distinct else None,
                       groups=label if groups else None)
    ids_of = lambda j: train_ids[j] if j < len(train_ids) else held_ids[j - len(train_ids)]  # noqa: E731
    report = {"threshold": config.dedup.threshold, "moved": not keep, "test": [], "val": [], "with_note": [],
              "pairs": []}
    for lk in leaks:
        name, h = held[lk.held]
        report[name].append(held_ids[lk.held])
        report["pairs"].append({"id": held_ids[lk.held], "split": name, "near": ids_of(lk.pool),
                                "similarity": round(lk.similarity, 4)})
    if not keep:
        leaked = {lk.held for lk in leaks}
        moving = {label[i] for i in leaked}
        for i, (name, h) in enumerate(held):  # in held order, as the leaks come
            if label[i] in moving:
                if i not in leaked:
                    report["with_note"].append(held_ids[i])
                parts[name].remove(h)
                parts["train"].append(h)
    for key in ("test", "val", "with_note"):
        report[key].sort()
    return report


def plan_split(store: Store, config: Config, val: float, test: float, seed: int, keep_leaks: bool,
               examples: list | None = None) -> tuple[dict, dict[str, list[str]], dict[str, str], dict]:
    """The split export_dataset writes, without writing it: (content hash → example, split → hashes, hash → note
    group, leak report). Raises DatasetError when nothing is approved or an approved example is invalid."""
    examples = store.examples(status="approved") if examples is None else examples
    # An example imported with KTO's label false is an answer not to give: kept for KTO, never trained on by SFT.
    examples = [ex for ex in examples if ex.meta.get("label") is not False]
    if not examples:
        raise DatasetError("no approved examples to export; approve some first (`a` in the TUI or `forge approve ID`)")
    for ex in examples:
        found = validate_messages(ex.messages, config.validation.max_tokens, config.validation.tokenizer)
        if found:
            raise DatasetError(f"approved example {ex.id} is invalid: {found[0]}; edit or reject it")
    by_hash = {}
    for ex in examples:  # identical content approved twice counts once
        by_hash.setdefault(ex.content_hash, ex)
    groups = {h: g for h, ex in by_hash.items() if (g := note_of(ex))}
    parts = split(list(by_hash), val, test, seed, groups)
    leaks = move_leaks(store, by_hash, parts, config, keep_leaks, groups)
    return by_hash, parts, groups, leaks


def export_dataset(store: Store, out: str | Path, config: Config, val: float | None = None,
                   test: float | None = None, seed: int | None = None, fmt: str | None = None,
                   keep_leaks: bool = False) -> dict:
    """Write train/val/test JSONL and manifest.json. All examples of one vault note land in one split (split() by
    note_of; the manifest says `group_by: "note"` and how many notes each split holds). Val and test examples with
    a near-duplicate in train are reported and, unless keep_leaks, moved into train with their note (move_leaks)."""
    d = config.dataset
    val = d.val if val is None else val
    test = d.test if test is None else test
    seed = d.seed if seed is None else seed
    fmt = fmt or d.format
    if fmt not in ("chat", "alpaca"):
        raise DatasetError(f"unknown format {fmt!r}: use chat or alpaca")
    by_hash, parts, groups, leaks = plan_split(store, config, val, test, seed, keep_leaks)
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
    notes = {name: len({groups[h] for h in parts[name] if h in groups}) for name in SPLITS}
    manifest = {
        **counts, "dataset_hash": digest, "format": fmt, "seed": seed, "val_fraction": val,
        "test_fraction": test, "group_by": "note", "notes": notes, "forge_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "ids": {name: sorted(by_hash[h].id for h in parts[name]) for name in SPLITS}, "leaks": leaks,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {**counts, "dataset_hash": digest, "notes": notes,
            "leaks": {k: leaks[k] for k in ("threshold", "moved", "test", "val", "with_note")}}
