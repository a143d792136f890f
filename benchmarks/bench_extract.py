"""Extraction of a generated 10k-note vault vs a bare python-frontmatter loop over the same files.

forge's figure includes everything a user waits for: walking the vault, frontmatter, tags, wikilinks,
normalisation, and storing into SQLite. Goal: ratio (bare / forge) ≥ 0.8.
Usage: .venv/bin/python -m benchmarks.bench_extract [N]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import frontmatter

from benchmarks.common import make_vault, timed
from forge.config import Config
from forge.extract import run_extract
from forge.store import Store


def main(n: int = 10_000) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="forge-bench-"))
    try:
        vault = make_vault(tmp / "vault", n)
        files = sorted(vault.rglob("*.md"))

        def bare():
            for f in files:
                frontmatter.load(f)

        runs = iter(range(100))

        def forge_run():
            ws = tmp / f"ws{next(runs)}"
            store = Store.for_workspace(ws)
            report = run_extract(store, "obsidian", vault, Config(workspace=str(ws)))
            assert report["added"] > 0.5 * n
            store.close()

        t_bare, t_forge = timed(bare), timed(forge_run)
        result = {"notes": n, "bare_frontmatter_s": round(t_bare, 3), "forge_extract_s": round(t_forge, 3),
                  "ratio": round(t_bare / t_forge, 2), "goal": ">= 0.8"}
        print(result)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
