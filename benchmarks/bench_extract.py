"""Extraction of a generated 10k-note vault, each phase against the bare library it wraps.

- read: forge's extractor (walking the vault, frontmatter, tags, wikilinks, comments, block ids, normalisation)
  vs a bare python-frontmatter loop over the same files. forge does more than parse, so this ratio is a record,
  not a goal.
- store: Store.ingest (dedup by content hash, the human-edit checks, one transaction) vs a bare sqlite3
  executemany of the same rows into the same schema (its full-text indexes and triggers included). Goal ≥ 0.8.
- total: what a user waits for, read + store, against the bare frontmatter loop (the figure this benchmark printed
  alone before the store had full-text indexes; it was 0.12 then too).
Usage: .venv/bin/python -m benchmarks.bench_extract [N]
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

import frontmatter

from benchmarks.common import make_vault, timed
from forge.config import Config
from forge.data.extract import extract, run_extract
from forge.store import Store, canonical_messages, content_hash, flatten, now


def main(n: int = 10_000) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="forge-bench-"))
    try:
        vault = make_vault(tmp / "vault", n)
        files = sorted(vault.rglob("*.md"))

        def bare():
            for f in files:
                frontmatter.load(f)

        config = Config(workspace=str(tmp / "ws-read"))
        items = extract("obsidian", vault, config).items
        runs = iter(range(100))

        def fresh_store() -> Store:
            return Store.for_workspace(tmp / f"ws{next(runs)}")

        def forge_read():
            extract("obsidian", vault, config)

        def forge_store():
            store = fresh_store()
            assert store.ingest(items)["added"] > 0.5 * n
            store.close()

        def bare_store():
            store = fresh_store()
            ts = now()
            rows = [(json.dumps(it.get("tags", []), ensure_ascii=False), canonical_messages(it["messages"]),
                     flatten(it["messages"]), content_hash(it["messages"]), content_hash(it["messages"]),
                     it.get("note_path"), it.get("heading"), it.get("line"), it["source_ref"],
                     json.dumps(it.get("meta", {}), ensure_ascii=False, default=str), it["extract_key"],
                     it["source_kind"], ts, ts) for it in items]
            db = sqlite3.connect(store.path)
            with db:
                db.executemany(
                    "INSERT OR IGNORE INTO examples (tags, messages, text, content_hash, source_hash, note_path, "
                    "heading, line, source_ref, meta, extract_key, source_kind, status, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?, 'pending', ?, ?)", rows)
            db.close()
            store.close()

        def forge_total():
            store = fresh_store()
            assert run_extract(store, "obsidian", vault, Config(workspace=str(store.path.parent)))["added"] > 0.5 * n
            store.close()

        t_bare, t_read = timed(bare), timed(forge_read)
        t_bare_store, t_store = timed(bare_store), timed(forge_store)
        t_total = timed(forge_total)
        result = {"notes": n, "examples": len(items),
                  "read": {"bare_frontmatter_s": round(t_bare, 3), "forge_s": round(t_read, 3),
                           "ratio": round(t_bare / t_read, 2)},
                  "store": {"bare_sqlite_s": round(t_bare_store, 3), "forge_s": round(t_store, 3),
                            "ratio": round(t_bare_store / t_store, 2), "goal": ">= 0.8"},
                  "total": {"forge_s": round(t_total, 3), "ratio_to_bare_frontmatter": round(t_bare / t_total, 2),
                            "notes_per_s": round(n / t_total)}}
        print(result)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
