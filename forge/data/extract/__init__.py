"""Extractors turn notes, CSV and LLM output into pending examples; `run_extract` stores them idempotently."""

from __future__ import annotations

from pathlib import Path

from forge.config import Config
from forge.data.extract.common import Extraction, ExtractError, Progress, lfs_pointer
from forge.store import Store

KINDS = ("obsidian", "csv", "jsonl", "dataset")


def file_kind(path: str | Path) -> str:
    """The extractor for a file or folder of held-out or imported examples, by what it is: CSV/TSV by extension,
    Parquet/Arrow files and folders (save_to_disk, or Parquet shards) as a dataset, anything else as JSONL."""
    from forge.data.extract.dataset import is_dataset_path
    from forge.data.extract.tabular import TSV_SUFFIXES

    if Path(path).suffix.lower() in (".csv",) + TSV_SUFFIXES:
        return "csv"
    return "dataset" if is_dataset_path(path) else "jsonl"


def extract(kind: str, path: str | Path, config: Config, progress: Progress | None = None, **options) -> Extraction:
    ex = config.extract
    if kind in ("csv", "jsonl") and (pointer := lfs_pointer(path)) is not None:
        raise ExtractError(f"{path}: {pointer}")
    if kind == "obsidian":
        from forge.data.extract.obsidian import extract_vault
        from forge.data.tokens import lazy_counter

        cfg = options.get("obsidian") or ex.obsidian
        count = lazy_counter(config.workspace_path(), config.validation.tokenizer) if cfg.max_tokens else None
        return extract_vault(path, cfg, ex.max_file_bytes, progress, count)
    if kind == "csv":
        from forge.data.extract.tabular import extract_csv

        return extract_csv(path, ex.csv, ex.max_file_bytes, ex.max_line_bytes, progress=progress, **options)
    if kind == "jsonl":
        from forge.data.extract.jsonl import extract_jsonl

        return extract_jsonl(path, ex.max_file_bytes, ex.max_line_bytes, progress)
    if kind == "dataset":
        from forge.data.extract.dataset import extract_dataset

        return extract_dataset(path, ex.max_line_bytes, progress, **options)
    raise ExtractError(f"unknown source kind {kind!r}: use one of {', '.join(KINDS)}")


VAULT_FILTER_KEYS = ("tags", "all_notes", "folders", "exclude_folders")


def vault_filter(store: Store, path: str | Path, config: Config, options: dict) -> tuple[dict, str]:
    """The tag/folder filter for a vault and where it came from: the options given now (then remembered for this
    vault), else the ones remembered from an earlier import of it, else config.json."""
    given = {k: options[k] for k in VAULT_FILTER_KEYS if options.get(k) not in (None, False, [], ())}
    if given:
        return given, "given"
    remembered = store.source_options("obsidian", str(Path(path).resolve()))
    if remembered:
        return remembered, "remembered"
    return {}, "config"


def obsidian_config(config: Config, flt: dict):
    """config.extract.obsidian with a vault filter applied."""
    update = {}
    if flt.get("all_notes"):
        update["include_tags"] = []
    elif flt.get("tags"):
        update["include_tags"] = [t.lstrip("#") for t in flt["tags"]]
    if flt.get("folders"):
        update["include_folders"] = list(flt["folders"])
    if flt.get("exclude_folders"):
        update["exclude_folders"] = list(flt["exclude_folders"])
    return config.extract.obsidian.model_copy(update=update)


def _top(pairs: list, n: int) -> list:
    return [[k, v] for k, v in pairs[:n]]


CONTROLS = {
    "cli": {"all": "use --all-notes to take every note", "tag": "use --tag {tag} (repeatable) or --all-notes",
            "folder": "change --folder/--exclude-folder"},
    "dialog": {"all": "check All notes to take every note",
               "tag": "pick #{tag} (or others) under 'tags to take', or check All notes",
               "folder": "tick folders under 'folders to read'"},
}
"""What to do, in the words of where the person is: the CLI's flags, or the import dialog's controls."""


def nothing_found_hint(kind: str, path: str | Path, result: Extraction, cfg, controls: str = "cli") -> str:
    """One line for an extraction that gave no example: what filtered everything out and what to do."""
    do = CONTROLS[controls]
    reasons = result.reasons()
    survey = result.survey or {}
    if kind == "obsidian":
        if result.read == 0:
            return (f"no Markdown notes in {path}: point forge at the vault's top folder (the one holding "
                    f".obsidian/)")
        if reasons.get("tag-filter"):
            tags = ", ".join(f"#{t} ({n})" for t, n in survey.get("tags", [])[:6])
            wanted = ", ".join("#" + t for t in cfg.include_tags)
            if not tags:
                return (f"no note carries the tags {wanted}, and the vault's notes have no tags: "
                        f"{do['all']}")
            first = survey["tags"][0][0]
            return (f"no note carries the tags {wanted}; the vault's most common tags are {tags}: "
                    + do["tag"].format(tag=first))
        if reasons.get("folder-filter"):
            folders = ", ".join(f"{f} ({n})" for f, n in survey.get("folders", [])[:6])
            return f"the folder filter left no note; the vault's folders are {folders}: {do['folder']}"
    if result.skipped:
        top = max(reasons, key=reasons.get)
        first = next(s for s in result.skipped if s.code == top)
        return f"nothing usable in {path}: {reasons[top]} skipped, e.g. {first.source}: {first.reason}"
    return f"nothing found in {path}: it is empty"


def run_extract(store: Store, kind: str, path: str | Path, config: Config, progress: Progress | None = None,
                controls: str = "cli", **options) -> dict:
    """Extract and store. Returns the report: added, updated, unchanged, kept, duplicates, read (files/rows/lines
    looked at), skipped (each with source, reason and code), reasons (count per code), for a vault its survey
    (notes, folders, tags with counts), the filter used and where it came from, how long notes were split, and
    `hint`: one line saying what to do when nothing was found, naming the CLI's flags or (controls="dialog") the
    import dialog's controls. For a vault, `note_tokens` splits notes at that many tokens instead of
    extract.obsidian.max_tokens (a recipe's chunk length: the voice recipe's)."""
    flt, origin, cfg = {}, None, None
    if kind == "obsidian":
        note_tokens = options.pop("note_tokens", None)  # a recipe's chunk length (the voice recipe's), this import only
        flt, origin = vault_filter(store, path, config, options)
        cfg = obsidian_config(config, flt)
        if note_tokens:
            cfg = cfg.model_copy(update={"max_tokens": int(note_tokens)})
        options = {k: v for k, v in options.items() if k not in VAULT_FILTER_KEYS}
        options["obsidian"] = cfg
    result = extract(kind, path, config, progress, **options)
    counts = store.ingest(result.items)
    report = {**counts, "read": result.read, "skipped": [s.to_json() for s in result.skipped],
              "reasons": result.reasons(), "hint": None}
    if kind == "obsidian":
        survey = result.survey or {}
        report["survey"] = {"notes": survey.get("notes", 0), "folders": _top(survey.get("folders", []), 20),
                            "tags": _top(survey.get("tags", []), 30)}
        report["filter"] = {"origin": origin, "include_tags": cfg.include_tags,
                            "include_folders": cfg.include_folders, "exclude_folders": cfg.exclude_folders}
        report["chunked"] = result.chunked or {"notes": 0, "examples": 0, "hard_splits": 0}
        report["repaired"] = [{"source": src, "reason": why} for src, why in result.repaired]
    if kind == "dataset":
        report["dataset"] = result.survey  # the split, columns and shape read
    if not result.items:
        report["hint"] = nothing_found_hint(kind, path, result, cfg, controls)
    summary = {k: report[k] for k in ("added", "updated", "unchanged", "kept", "duplicates", "read", "reasons",
                                      "hint")}
    try:
        store.remember_source(kind, str(Path(path).resolve()), flt if origin == "given" else None, summary)
    except Exception:  # noqa: BLE001 - remembering is a convenience; the import itself is stored already
        pass
    return report
