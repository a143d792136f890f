"""Dedup benchmarks, each against the bare library it wraps, measured in one run:

1. embedding throughput: forge (batched encode + cache writes) vs bare SentenceTransformer.encode on the same
   texts and batch size (goal ≥ 0.9×);
2. a re-run over N unchanged examples, all embeddings cached (goal ≤ 2 s for 10k);
3. neighbour search over 100k random 384-d unit vectors (2% planted near-duplicates) vs blocked brute-force
   numpy: speed-up and recall of the true pairs above the threshold (goal ≥ 10× at recall ≥ 0.95).

Usage: .venv/bin/python -m benchmarks.bench_dedup [N_EXAMPLES] [N_VECTORS]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import corpus_sentences
from forge.config import Config
from forge.data import dedup as dd
from forge.store import Store


def make_examples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    pool = corpus_sentences()
    return [{"extract_key": f"b:{i}", "source_kind": "jsonl", "source_ref": f"b:{i}", "tags": [],
             "messages": [{"role": "user", "content": rng.choice(pool)},
                          {"role": "assistant", "content": " ".join(rng.sample(pool, 3))}]} for i in range(n)]


def embedding(n_embed: int, n_rerun: int) -> dict:
    ws = Path(tempfile.mkdtemp(prefix="forge-bench-")) / "ws"
    config = Config(workspace=str(ws))
    store = Store.for_workspace(ws)
    store.ingest(make_examples(n_rerun))
    examples = store.examples()
    model = dd.load_model(config.dedup.model)
    texts = [dd.example_text(e, config.dedup.text) for e in examples[:n_embed]]
    model.encode(texts[:64], batch_size=config.dedup.batch_size)  # warm-up
    t = time.perf_counter()
    model.encode(texts, batch_size=config.dedup.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    bare = time.perf_counter() - t
    t = time.perf_counter()
    _, embedded, _ = dd.embeddings_for(store, examples[:n_embed], config.dedup)
    ours = time.perf_counter() - t
    assert embedded == n_embed
    # Fill the cache for the rest, then time a full re-run of find_duplicates with nothing new.
    dd.embeddings_for(store, examples, config.dedup)
    t = time.perf_counter()
    r = dd.find_duplicates(store, config)
    rerun = time.perf_counter() - t
    assert r.embedded == 0 and r.cached == n_rerun
    return {"embed_texts": n_embed, "bare_encode_s": round(bare, 2), "forge_embed_s": round(ours, 2),
            "embed_ratio": round(bare / ours, 2), "rerun_examples": n_rerun, "rerun_s": round(rerun, 2),
            "goal": "ratio >= 0.9; rerun <= 2 s at 10k"}


def search(n: int, threshold: float = 0.9) -> dict:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, 384)).astype(np.float32)
    planted = n // 50
    src = rng.choice(n - planted, planted, replace=False)
    v[n - planted:] = v[src] + 0.25 * rng.standard_normal((planted, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    t = time.perf_counter()
    truth = {(a, b) for a, b, _ in dd.pairs_exact(v, threshold)}
    brute = time.perf_counter() - t
    t = time.perf_counter()
    found = {(a, b) for a, b, _ in dd.pairs_ann(v, threshold)}
    ann = time.perf_counter() - t
    recall = len(found & truth) / max(len(truth), 1)
    return {"vectors": n, "true_pairs": len(truth), "brute_force_s": round(brute, 1), "ann_s": round(ann, 1),
            "speedup": round(brute / ann, 1), "recall": round(recall, 3), "false_pairs": len(found - truth),
            "goal": "speedup >= 10 at recall >= 0.95"}


def main(n_examples: int = 10_000, n_vectors: int = 100_000) -> dict:
    result = {"embedding": embedding(min(2000, n_examples), n_examples), "search": search(n_vectors)}
    print(result)
    return result


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*args)
