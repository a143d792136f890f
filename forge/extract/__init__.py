"""Extractors turn notes, CSV and LLM output into pending examples; `run_extract` stores them idempotently."""

from __future__ import annotations

from pathlib import Path

from forge.config import Config
from forge.extract.common import Extraction, Progress
from forge.store import Store

KINDS = ("obsidian", "csv", "jsonl")


def extract(kind: str, path: str | Path, config: Config, progress: Progress | None = None, **options) -> Extraction:
    ex = config.extract
    if kind == "obsidian":
        from forge.extract.obsidian import extract_vault

        return extract_vault(path, ex.obsidian, ex.max_file_bytes, progress)
    if kind == "csv":
        from forge.extract.tabular import extract_csv

        return extract_csv(path, ex.csv, ex.max_file_bytes, ex.max_line_bytes, progress=progress, **options)
    if kind == "jsonl":
        from forge.extract.jsonl import extract_jsonl

        return extract_jsonl(path, ex.max_file_bytes, ex.max_line_bytes, progress)
    raise ValueError(f"unknown source kind {kind!r}: use one of {', '.join(KINDS)}")


def run_extract(store: Store, kind: str, path: str | Path, config: Config, progress: Progress | None = None,
                **options) -> dict:
    """Extract and store. Returns the CLI's report: added, updated, unchanged, kept, duplicates, skipped."""
    result = extract(kind, path, config, progress, **options)
    counts = store.ingest(result.items)
    return {**counts, "skipped": [s.to_json() for s in result.skipped]}
