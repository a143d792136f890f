"""Leakage: held-out items (test, val, eval prompts) with a near-duplicate in the data a model trains on.

The same notion of "near-duplicate" as Dedup, from the same code: sentence embeddings of the configured model and
text mode (forge/data/dedup.py, cached in the store by content hash, so an example Dedup already embedded is never
embedded again), cosine ≥ `dedup.threshold`, or identical after case, whitespace and punctuation are normalised.
What is compared is `dedup.leak_text`: the whole conversation by default, or the user turns only, for data where a
system prompt or an answer format that every example shares would make every held-out item look like a leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

from forge.config import DedupConfig
from forge.data.dedup import embeddings_for, example_text, exact_key
from forge.store import Store, content_hash

Progress = Callable[[int, int], None]


@dataclass
class Leak:
    held: int  # index into the held-out list
    pool: int  # index into the pool (training) list
    similarity: float


def _as_examples(conversations: list[list[dict]]) -> list[SimpleNamespace]:
    # embeddings_for needs only what an Example has for this: its messages and their content hash (the cache key)
    return [SimpleNamespace(messages=m, content_hash=content_hash(m)) for m in conversations]


def pairs_across(held_vectors, pool_vectors, threshold: float, block: int = 256) -> list[tuple[int, int, float]]:
    """Every (held i, pool j, cosine) with cosine ≥ threshold, by blocked matrix products (memory block × pool)."""
    import numpy as np

    out = []
    if len(pool_vectors) == 0:
        return out
    for start in range(0, len(held_vectors), block):
        sims = held_vectors[start:start + block] @ pool_vectors.T
        for r, c in zip(*np.nonzero(sims >= threshold)):
            out.append((start + int(r), int(c), float(min(sims[r, c], 1.0))))
    return out


def find_leaks(store: Store, held: list[list[dict]], pool: list[list[dict]], cfg: DedupConfig,
               threshold: float | None = None, transitive: bool = False,
               ignore: Callable[[int, int], bool] | None = None, progress: Progress | None = None,
               groups: list | None = None) -> list[Leak]:
    """Held-out conversations with a near-duplicate in the pool: one Leak each (its most similar pool item).

    transitive=True treats every leaked held-out item as joining the pool (it is about to be moved into the
    training split) and repeats until nothing more leaks, so what stays held out has no near-duplicate in the
    final training data. `ignore(held i, pool j)` drops pairs a person marked as not duplicates. With
    transitive=True a Leak's `pool` may point past the pool: index len(pool) + k is held item k. `groups` (with
    transitive=True): a label per held item; items with one label move together (the chunks of one note), so when
    one leaks the others join the pool with it, though they are no Leak themselves."""
    if not held or not pool:
        return []
    threshold = cfg.threshold if threshold is None else threshold
    mode = cfg.leak_text
    vectors, _, _ = embeddings_for(store, _as_examples(held + pool), cfg.model_copy(update={"text": mode}), progress)
    hv, pv = vectors[:len(held)], vectors[len(held):]
    pool_keys: dict[str, int] = {}
    for j, conv in enumerate(pool):
        pool_keys.setdefault(exact_key(example_text(SimpleNamespace(messages=conv), mode)), j)
    held_keys = [exact_key(example_text(SimpleNamespace(messages=conv), mode)) for conv in held]

    best: dict[int, Leak] = {}

    def offer(i: int, j: int, sim: float) -> None:
        if ignore is not None and j < len(pool) and ignore(i, j):
            return
        if i not in best or sim > best[i].similarity:
            best[i] = Leak(i, j, sim)

    for i, j, sim in pairs_across(hv, pv, threshold):
        offer(i, j, sim)
    for i, key in enumerate(held_keys):
        if key in pool_keys:
            offer(i, pool_keys[key], 1.0)
    mates: dict = {}
    for i, g in enumerate(groups if transitive and groups is not None else []):
        mates.setdefault(g, []).append(i)

    def with_mates(found) -> set[int]:
        return {k for i in found for k in mates[groups[i]]} if mates else set(found)

    moved = with_mates(best)
    frontier = sorted(moved)
    while transitive and frontier:
        rest = [i for i in range(len(held)) if i not in moved]
        if not rest:
            break
        import numpy as np

        moved_keys = {held_keys[k]: k for k in frontier}
        before = set(best)
        for r, c, sim in pairs_across(hv[rest], hv[np.array(frontier)], threshold):
            offer(rest[r], len(pool) + frontier[c], sim)
        for i in rest:
            if held_keys[i] in moved_keys:
                offer(i, len(pool) + moved_keys[held_keys[i]], 1.0)
        frontier = sorted(with_mates(set(best) - before) - moved)
        moved |= set(frontier)
    return [best[i] for i in sorted(best)]
