"""The store at scale: list, filter, FTS search, the Curate screen's next-example and approve key presses, with N
examples (default 1M; goal p99 < 50 ms each), and dedup over N precomputed embedding vectors with forge's faiss
path (goal: minutes; peak memory reported). Ratios against bare sqlite3 running the same SQL on the same file.

Usage: .venv/bin/python -m benchmarks.bench_store [N] [--ws PATH]   (PATH: reuse a filled workspace)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.bench_tui import fill_store, keypress_latency
from benchmarks.common import percentiles


def timed(fn, runs: int = 30) -> dict:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    p50, p99 = percentiles(samples)
    return {"p50_ms": round(p50, 1), "p99_ms": round(p99, 1)}


def store_ops(ws: Path) -> dict:
    from forge.store import Store

    store = Store.for_workspace(ws)
    bare = sqlite3.connect(ws / "forge.db")
    n = store.counts()["total"]
    last = n
    out = {
        "counts": timed(store.counts),
        "list_all_ids": timed(lambda: store.ids(), 5),
        "filter_status_pending": timed(lambda: store.ids(status="pending"), 5),
        "filter_tag": timed(lambda: store.ids(tag="decision"), 5),
        "fts_rare_word": timed(lambda: store.ids(search="Question 999999"), 10),
        "fts_common_word": timed(lambda: store.ids(search="note"), 5),
        "page_of_50": timed(lambda: store.page(status="pending", after=n // 2, limit=50), 30)
        if hasattr(store, "page") else None,
        "get_one": timed(lambda: store.get(last // 2)),
        "bare_sqlite_list_all_ids": timed(lambda: [r[0] for r in bare.execute("SELECT id FROM examples ORDER BY id")],
                                          5),
    }
    out["ratio_list_vs_bare"] = round(out["list_all_ids"]["p50_ms"] / max(out["bare_sqlite_list_all_ids"]["p50_ms"],
                                                                          0.01), 2)
    store.close()
    bare.close()
    return out


def dedup_at_scale(n: int, dim: int = 384, planted: int = 1000) -> dict:
    """forge's ANN pair search (faiss k-means cells, forge/dedup.py pairs_ann) over n unit vectors with `planted`
    near-duplicate pairs; recall of the planted pairs, seconds and peak RSS."""
    import numpy as np

    from forge.dedup import pairs_ann

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    src = rng.choice(n, planted, replace=False)
    dst = (src + n // 2) % n
    vectors[dst] = vectors[src] + 0.05 * rng.standard_normal((planted, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    t = time.perf_counter()
    pairs = pairs_ann(vectors, threshold=0.95)
    seconds = time.perf_counter() - t
    found = {(min(a, b), max(a, b)) for a, b, _ in pairs}
    want = {(min(int(a), int(b)), max(int(a), int(b))) for a, b in zip(src, dst)}
    return {"vectors": n, "dim": dim, "seconds": round(seconds, 1), "pairs": len(pairs),
            "planted_recall": round(len(found & want) / planted, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--ws", type=Path, default=None)
    ap.add_argument("--skip-dedup", action="store_true")
    a = ap.parse_args()
    ws = a.ws or Path(tempfile.mkdtemp(prefix="forge-bench-store-")) / "ws"
    fill_s = None
    if not (ws / "forge.db").exists():
        t = time.perf_counter()
        fill_store(ws, a.n).close()
        fill_s = round(time.perf_counter() - t, 1)
    result = {"examples": a.n, "workspace": str(ws), "fill_s": fill_s, "store": store_ops(ws),
              "keypress": asyncio.run(keypress_latency(ws, 100)), "goal": "p99 < 50 ms"}
    if not a.skip_dedup:
        result["dedup"] = dedup_at_scale(a.n)
    print(result)
    return result


if __name__ == "__main__":
    main()
