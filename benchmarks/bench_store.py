"""The store at scale: status counts, keyset pages (list, status/tag/source filters, FTS search), the Curate
screen's key presses (next, previous, approve, a filter change), with N examples (default 1M; goal p99 < 50 ms
each), and dedup over N precomputed embedding vectors with forge's faiss path (goal: minutes; peak memory
reported). Each store operation also runs as the bare sqlite3 query it wraps, on its own connection to the same
file: `ratio` is forge's p50 over bare's (goal ≤ 1.2 for what is one query).

The fill is one transaction (Store.bulk_insert: executemany, the full-text index filled in one pass).

Usage: .venv/bin/python -m benchmarks.bench_store [N] [--ws PATH] [--skip-dedup] [--dedup-only] [--dedup-n M]
       (PATH: reuse a filled workspace)
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from benchmarks.common import action_to_frame, corpus_sentences, curate_app, percentiles


def timed(fn, runs: int = 30) -> dict:
    fn()  # warm: the first read of a page from disk is not what a key press pays
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    p50, p99 = percentiles(samples)
    return {"p50_ms": round(p50, 2), "p99_ms": round(p99, 2)}


def items(n: int, seed: int = 1):
    """The shape bench_tui fills (a numbered question, four paragraphs of answer, one of three tags), drawn from
    real English sentences (the Python help topics, benchmarks/common.py corpus_sentences) so that words are as
    unevenly common as in a person's notes: "the" is in nearly every example, "object" in about half, "function"
    in a third, most words in few. Making a million takes seconds (every question is unique by its number)."""
    rng = random.Random(seed)
    tags = ["reflection", "decision", "learning"]
    pool = corpus_sentences()
    for i in range(n):
        yield {"extract_key": f"bench:{i}", "source_kind": "jsonl", "source_ref": f"bench.jsonl:{i + 1}",
               "tags": [tags[rng.randrange(3)]],
               "messages": [{"role": "user", "content": f"Question {i}: " + rng.choice(pool)},
                            {"role": "assistant", "content": "\n\n".join(rng.choices(pool, k=4))}]}


def fill(ws: Path, n: int) -> float:
    from forge.store import Store

    store = Store.for_workspace(ws)
    t = time.perf_counter()
    store.bulk_insert(items(n))
    seconds = time.perf_counter() - t
    store.close()
    return seconds


def store_ops(ws: Path) -> dict:
    from forge.store import Store

    store = Store.for_workspace(ws)
    bare = sqlite3.connect(ws / "forge.db")
    n = store.counts()["total"]
    mid = n // 2
    out: dict = {"counts": {**timed(store.counts),
                            "bare": timed(lambda: bare.execute("SELECT status, n FROM example_counts").fetchall())}}
    # (name, filters and paging as Curate passes them)
    pages = [
        ("page_first_all", {}),
        ("page_middle_all", {"after": mid}),
        ("page_previous_all", {"before": mid}),
        ("page_middle_pending", {"status": "pending", "after": mid}),
        ("page_middle_tag", {"tag": "decision", "after": mid}),
        ("page_middle_source", {"source": "bench.jsonl:9", "after": mid}),
        ("fts_rare_word_first_page", {"search": "Question 999999"}),
        ("fts_rare_prefix_first_page", {"search": f"Question {mid}"}),
        ("fts_common_word_first_page", {"search": "the"}),  # in ~all examples; a 3-letter prefix index entry
        ("fts_common_word_middle_page", {"search": "the", "after": mid}),
        ("fts_common_word_pending_middle_page", {"search": "the", "status": "pending", "after": mid}),
        ("fts_common_6_letter_prefix_first_page", {"search": "object"}),  # in ~half; the longest prefix index
        ("fts_common_long_prefix_first_page", {"search": "functio"}),  # 7 letters: no prefix index; ~a third
        ("fts_common_long_prefix_middle_page", {"search": "functio", "after": mid}),
        ("fts_two_words_first_page", {"search": "return value"}),
    ]
    for name, kw in pages:
        sql, params = store.page_sql(**kw, limit=100)
        out[name] = {**timed(lambda kw=kw: store.page(**kw, limit=100)),
                     "bare": timed(lambda sql=sql, params=params: bare.execute(sql, params).fetchall())}
    from tui.screens.curate import COUNT_CAP

    for name, kw in [("count_fts_common_capped", {"search": "the", "cap": COUNT_CAP}),  # as Curate's reload counts
                     ("count_tag_capped", {"tag": "decision", "cap": COUNT_CAP}),
                     ("count_pending_below_middle_capped", {"status": "pending", "below": mid, "cap": COUNT_CAP})]:
        out[name] = timed(lambda kw=kw: store.count(**kw), 10)
    out["get_one"] = {**timed(lambda: store.get(mid)),
                      "bare": timed(lambda: bare.execute("SELECT * FROM examples WHERE id=?", (mid,)).fetchone())}
    for v in out.values():
        if isinstance(v, dict) and "bare" in v:
            v["ratio"] = round(v["p50_ms"] / max(v["bare"]["p50_ms"], 0.001), 2)
    # Not a key path any more (Curate pages), measured for the CLI's `forge list`
    out["list_all_ids_s"] = round(timed(lambda: store.ids(), 2)["p50_ms"] / 1000, 2)
    out["explain"] = {name: [r[3] for r in bare.execute("EXPLAIN QUERY PLAN " + store.page_sql(**kw)[0],
                                                        store.page_sql(**kw)[1])]
                      for name, kw in pages if name in ("page_middle_pending", "fts_common_word_pending_middle_page")}
    store.close()
    bare.close()
    return out


async def curate_keys(ws: Path, presses: int = 100) -> dict:
    """Time from a Curate key's action starting to the next frame painted (headless), starting in the middle of
    the store: next (j), previous (k), approve (a), and the status filter (s, which re-reads the window)."""
    out = {}
    async with curate_app(ws) as (store, app, pilot):
        screen = app.screen
        screen.reload(keep_id=store.page(status="pending", after=store.counts()["total"] // 2, limit=1)[0])
        await pilot.pause()
        out["start_position"] = screen.position_text()
        for key, action, n in (("j", "next", presses), ("k", "previous", presses), ("a", "approve", presses),
                               ("s", "cycle_status", 20)):
            out[key] = await action_to_frame(app, pilot, screen, action, n)
        out["end_position"] = screen.position_text()
    return out


def dedup_at_scale(n: int, dim: int = 384, planted: int = 1000) -> dict:
    """forge's ANN pair search (faiss k-means cells, forge/data/dedup.py pairs_ann) over n unit vectors with `planted`
    near-duplicate pairs; recall of the planted pairs, seconds and peak RSS."""
    import numpy as np

    from forge.data.dedup import pairs_ann

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
    ap.add_argument("--dedup-only", action="store_true", help="only the faiss pair search (its own peak RSS)")
    ap.add_argument("--dedup-n", type=int, default=None, help="vectors for the dedup part (default: N)")
    a = ap.parse_args()
    if a.dedup_only:
        result = {"dedup": dedup_at_scale(a.dedup_n or a.n)}
        print(result)
        return result
    ws = a.ws or Path(tempfile.mkdtemp(prefix="forge-bench-store-")) / "ws"
    fill_s = None
    if not (ws / "forge.db").exists():
        fill_s = round(fill(ws, a.n), 1)
    result = {"examples": a.n, "workspace": str(ws), "fill_s": fill_s, "store": store_ops(ws),
              "keypress": asyncio.run(curate_keys(ws)), "goal": "p99 < 50 ms; ratio <= 1.2"}
    if not a.skip_dedup:
        result["dedup"] = dedup_at_scale(a.dedup_n or a.n)
    print(result)
    return result


if __name__ == "__main__":
    main()
