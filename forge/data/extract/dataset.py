"""Datasets as people download them → conversations: Parquet files, Arrow files, `datasets.save_to_disk` folders
(a DatasetDict with splits, or one Dataset) and folders of Parquet/Arrow shards as the Hugging Face Hub serves them.

Folders and Arrow files are opened with the `datasets` library (memory-mapped, nothing written to its cache);
Parquet is read in batches with pyarrow, which `datasets` is built on, with the `datasets` features stored in the
file (class-label names) kept. The shape is chosen once from the columns: preference pairs (chosen/rejected, with
a prompt column or HH-RLHF transcripts) and KTO labels (prompt/completion/label) first, a chat column (messages/conversations),
Self-Instruct (instruction + instances, one example per instance), Alpaca (instruction/input/output), the other
common pairs, or the prompt/response columns the caller names. Every row then gives an example or a skip with its
reason; one bad row never stops the rest. Rows are numbered from 0, as `dataset[i]` numbers them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from forge.data.extract.common import (CHAT_KEYS, PROMPT_LIKE, Extraction, ExtractError, Progress, coerce_messages,
                                       describe_error, empty_turn, examples_of, lfs_pointer, messages_from_pair)
from forge.data.extract.preference import describe_columns, example_key, preference_columns, preference_found
from forge.data.validate import normalize_messages

PARQUET_SUFFIXES = (".parquet", ".pq")
ARROW_SUFFIXES = (".arrow", ".feather", ".ipc")
DATA_SUFFIXES = PARQUET_SUFFIXES + ARROW_SUFFIXES
TRAIN_SPLITS = ("train",)
HELD_OUT_SPLITS = ("test", "validation", "valid", "val", "dev", "eval")
BATCH = 512

# Column pairs of common datasets, tried in order (case-insensitively) when the caller names no columns and the rows
# are neither chat nor Self-Instruct.
KNOWN_PAIRS = [("prompt", "response"), ("prompt", "completion"), ("instruction", "output"), ("instruction", "response"),
               ("input", "output"), ("question", "answer"), ("question", "response"), ("query", "response"),
               ("context", "response"), ("transcript", "summary"), ("dialogue", "summary"), ("document", "summary"),
               ("text", "summary"), ("article", "highlights"), ("article", "summary"), ("source", "target"),
               ("input", "target"), ("inputs", "targets"), ("text", "label"), ("sentence", "label")]


def is_dataset_path(path: str | Path) -> bool:
    """A Parquet/Arrow file or a folder (save_to_disk, or Parquet/Arrow shards)."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in DATA_SUFFIXES


@dataclass
class Table:
    """One file's or one split's rows: `label` names it in sources, `batches()` yields lists of row dicts."""

    label: str
    split: str
    columns: list[str]
    rows: int | None
    batches: Callable[[], Iterator[list[dict]]]
    class_names: dict[str, list[str]] = field(default_factory=dict)  # ClassLabel columns: id → name
    where: str = ""  # what a skipped row's source starts with: the file, or the folder and split


def _at(tables: list[Table], where: str) -> list[Table]:
    for t in tables:
        t.where = where
    return tables


def _class_names(features) -> dict[str, list[str]]:
    from datasets import ClassLabel

    try:
        return {k: list(v.names) for k, v in (features or {}).items() if isinstance(v, ClassLabel)}
    except Exception:  # noqa: BLE001 - names are a nicety; the ids still read
        return {}


def _rows_of(batch: dict, columns: list[str]) -> list[dict]:
    return [dict(zip(columns, values)) for values in zip(*(batch[c] for c in columns))]


def _from_dataset(ds, label: str, split: str) -> Table:
    columns = list(ds.column_names)

    def batches():
        for batch in ds.iter(batch_size=BATCH):
            yield _rows_of(batch, columns)

    return Table(label, split, columns, len(ds), batches, _class_names(ds.features))


def _from_arrow_table(table, label: str, split: str) -> Table:
    from datasets import Features

    try:
        features = Features.from_arrow_schema(table.schema)
    except Exception:  # noqa: BLE001 - a schema datasets does not know still reads as plain columns
        features = None
    return Table(label, split, list(table.column_names), table.num_rows,
                 lambda: (b.to_pylist() for b in table.to_batches(max_chunksize=BATCH)), _class_names(features))


def _parquet(path: Path, label: str, split: str) -> Table:
    import pyarrow.parquet as pq
    from datasets import Features

    pf = pq.ParquetFile(path)
    try:
        features = Features.from_arrow_schema(pf.schema_arrow)
    except Exception:  # noqa: BLE001
        features = None
    return Table(label, split, list(pf.schema_arrow.names), pf.metadata.num_rows,
                 lambda: (b.to_pylist() for b in pf.iter_batches(batch_size=BATCH)), _class_names(features))


def _arrow(path: Path, label: str, split: str) -> Table:
    from datasets import Dataset

    try:  # what datasets writes (the Arrow stream format), memory-mapped
        return _from_dataset(Dataset.from_file(str(path)), label, split)
    except Exception:  # noqa: BLE001 - else the Arrow file format (Feather v2), as pyarrow and pandas write it
        import pyarrow.feather as feather

        return _from_arrow_table(feather.read_table(path, memory_map=True), label, split)


def _open_file(path: Path, label: str, split: str) -> Table:
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return _parquet(path, label, split)
    return _arrow(path, label, split)


def _shard_split(path: Path, root: Path) -> str:
    """The split a Hub-style shard belongs to: train-00000-of-00002.parquet → train; default/test/0000.parquet →
    test; anything else by its own name."""
    head = re.split(r"[-.]", path.stem)[0]
    if head and not head.isdigit():
        return head
    return path.parent.name if path.parent != root else path.stem


def _unreadable(path: Path, e: BaseException) -> str:
    return lfs_pointer(path) or f"cannot read: {describe_error(e)}"


def _saved(folder: Path, label: str, split: str, result: Extraction | None) -> list[Table]:
    """The one Dataset save_to_disk wrote to folder, or [] with an `unreadable` skip when it is damaged."""
    from datasets import load_from_disk

    try:
        return [_from_dataset(load_from_disk(str(folder)), label, split)]
    except Exception as e:  # noqa: BLE001 - a damaged folder is reported like a damaged file
        if result is not None:
            shard = next(iter(sorted(folder.glob("*.arrow"))), folder)
            result.skip(str(folder), _unreadable(shard, e), "unreadable")
        return []


def _choose_split(path: Path, splits: list[str], split: str | None, prefer: tuple[str, ...]) -> str:
    if split is not None:
        if split in splits:
            return split
        raise ExtractError(f"{path}: no split {split!r}; it has {', '.join(splits)}: pass --split {splits[0]}")
    if len(splits) == 1:
        return splits[0]
    for s in prefer:
        if s in splits:
            return s
    raise ExtractError(f"{path} has the splits {', '.join(splits)}: pick one with --split")


def open_tables(path: str | Path, split: str | None = None, prefer: tuple[str, ...] = TRAIN_SPLITS,
                result: Extraction | None = None) -> tuple[list[Table], list[str], str]:
    """The tables of the chosen split, every split there is, and the chosen one. Raises ExtractError for a split
    that is not there or a folder that holds no dataset; a file or split folder that cannot be opened is an
    `unreadable` skip in `result` (when given)."""
    path = Path(path)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            # A DatasetDict: only the chosen split is opened, so a damaged other split never stops it.
            try:
                splits = [str(x) for x in json.loads((path / "dataset_dict.json").read_text())["splits"]]
            except Exception:  # noqa: BLE001 - a hand-edited index: the split folders say it too
                splits = sorted(d.name for d in path.iterdir() if (d / "state.json").is_file())
            if not splits:
                raise ExtractError(f"{path}: the saved DatasetDict has no splits")
            chosen = _choose_split(path, splits, split, prefer)
            return _at(_saved(path / chosen, f"{path.name}/{chosen}", chosen, result), f"{path}:{chosen}"), splits, \
                chosen
        if (path / "state.json").is_file():
            try:
                name = json.loads((path / "state.json").read_text()).get("_split") or "train"
            except Exception:  # noqa: BLE001
                name = "train"
            if split is not None and split != name:
                raise ExtractError(f"{path}: no split {split!r}; it holds one dataset (split {name!r}): "
                                   f"leave out --split")
            return _at(_saved(path, path.name, name, result), f"{path}:{name}"), [name], name
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise ExtractError(f"{path}: not a dataset folder: no dataset_dict.json or state.json (from "
                               f"save_to_disk) and no .parquet or .arrow files inside")
        by_split: dict[str, list[Path]] = {}
        for f in files:
            by_split.setdefault(_shard_split(f, path), []).append(f)
        splits = list(by_split)
        chosen = _choose_split(path, splits, split, prefer)
        tables = []
        for f in by_split[chosen]:
            try:
                tables += _at([_open_file(f, str(f.relative_to(path.parent)), chosen)], str(f))
            except Exception as e:  # noqa: BLE001 - one damaged shard never stops the others
                if result is not None:
                    result.skip(str(f), _unreadable(f, e), "unreadable")
        return tables, splits, chosen
    if not path.exists():
        raise ExtractError(f"{path}: no such file or folder")
    if split is not None:
        raise ExtractError(f"{path} is one file with no splits: leave out --split (splits are for save_to_disk "
                           f"folders)")
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise ExtractError(f"{path}: not a Parquet or Arrow file (.parquet, .arrow, .feather) nor a dataset folder")
    try:
        return _at([_open_file(path, path.name, "train")], str(path)), ["train"], "train"
    except Exception as e:  # noqa: BLE001 - a damaged or mislabelled file is reported, not raised
        if result is not None:
            result.skip(str(path), _unreadable(path, e), "unreadable")
        return [], ["train"], "train"


# ---- the shape of the rows --------------------------------------------------------------------------------------
@dataclass
class Shape:
    kind: str  # "chat", "records" (Self-Instruct: examples_of per row), "pair" or "preference"
    prompt: str | None = None
    response: str | None = None
    extra: str | None = None  # Alpaca's input, appended to the instruction
    system: str | None = None
    chat: str | None = None
    preference: dict[str, str] | None = None  # preference.py's keys (prompt, chosen, rejected, ...) → columns

    def describe(self) -> str:
        if self.kind == "preference":
            return describe_columns(self.preference)
        if self.kind == "chat":
            return f"chat ({self.chat})"
        if self.kind == "records":
            return "Self-Instruct (instruction + instances)"
        cols = [c for c in (self.prompt, self.extra, self.response) if c]
        return "columns " + " + ".join(cols[:-1]) + f" → {cols[-1]}" + (f" (system: {self.system})" if self.system
                                                                        else "")


def _resolve(name: str, columns: list[str], where: str) -> str:
    if name in columns:
        return name
    lower = {c.lower(): c for c in columns}
    if name.lower() in lower:
        return lower[name.lower()]
    raise ExtractError(f"{where}: no column {name!r}; it has: {', '.join(columns)}")


def pick_shape(columns: list[str], where: str, prompt_column: str | None = None, response_column: str | None = None,
               system_column: str | None = None, messages_column: str | None = None) -> Shape:
    system = _resolve(system_column, columns, where) if system_column else None
    pref = preference_columns(columns) if not (messages_column or response_column) else None
    if pref is not None:
        # Before the chat and pair shapes: UltraFeedback-binarized has a `messages` column beside chosen/rejected, and
        # prompt/completion (KTO) is an SFT pair too. The prompt is --prompt-column, `prompt`, or a prompt-like
        # column (Orca DPO pairs: question/chosen/rejected); none at all is right for HH-RLHF transcripts.
        lower = {c.lower(): c for c in columns}
        prompt = (_resolve(prompt_column, columns, where) if prompt_column else pref.get("prompt")
                  or next((lower[k] for k in (*PROMPT_LIKE, "instruction") if k in lower), None))
        pref = {k: v for k, v in pref.items() if k not in ("prompt", "system")}
        if prompt:
            pref["prompt"] = prompt
        if system or "system" in lower:
            pref["system"] = system or lower["system"]
        return Shape("preference", preference=pref)
    if messages_column:
        return Shape("chat", chat=_resolve(messages_column, columns, where), system=system)
    if prompt_column or response_column:
        if not (prompt_column and response_column):
            raise ExtractError("give both --prompt-column and --response-column")
        p, r = _resolve(prompt_column, columns, where), _resolve(response_column, columns, where)
        extra = next((c for c in columns if c.lower() == "input"), None) if p.lower() == "instruction" else None
        return Shape("pair", p, r, extra if extra not in (p, r) else None, system)
    cols = set(columns)
    chat = next((k for k in CHAT_KEYS if k in cols), None)
    if chat:
        return Shape("chat", chat=chat, system=system)
    if "instruction" in cols and "instances" in cols:  # Self-Instruct: one example per instance
        return Shape("records", system=system or ("system" if "system" in cols else None))
    lower = {c.lower(): c for c in columns}
    for p, r in KNOWN_PAIRS:
        if p in lower and r in lower:
            extra = lower.get("input") if p == "instruction" else None
            return Shape("pair", lower[p], lower[r], extra, system or lower.get("system"))
    if ("chosen" in lower) != ("rejected" in lower):
        have, lack = ("chosen", "rejected") if "chosen" in lower else ("rejected", "chosen")
        raise ExtractError(f"{where}: has a {have!r} column but no {lack!r} one, so it is no preference dataset (it "
                           f"has: {', '.join(columns)}); pass --prompt-column and --response-column to read it as "
                           f"prompt/response")
    raise ExtractError(f"{where}: cannot tell which columns hold the prompt and the response (it has: "
                       f"{', '.join(columns)}); pass --prompt-column and --response-column, or --messages-column")


def _text(value, column: str, names: list[str] | None) -> tuple[str | None, str]:
    """(text, "") for a cell, or (None, reason) when it is not text; None and NaN read as empty, a class label as its
    name, a list of strings as one text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", ""
    if isinstance(value, str):
        return value, ""
    if names is not None and isinstance(value, int) and 0 <= value < len(names):
        return names[value], ""
    if isinstance(value, (bool, int, float)):
        return str(value), ""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        # Text stored as a list: words (tokenised corpora) join with spaces, sentences or paragraphs with newlines.
        words = all(not any(c.isspace() for c in v) for v in value)
        return (" " if words else "\n").join(value), ""
    kind = "a list" if isinstance(value, (list, tuple)) else "an object" if isinstance(value, dict) else \
        type(value).__name__
    return None, f"{column!r} holds {kind}, not text"


def _too_big(msgs: list[dict], meta: dict, max_field_bytes: int) -> str | None:
    texts = [(f"the {m['role']} turn", m["content"]) for m in msgs]
    if isinstance(meta.get("rejected"), str):
        texts.append(("the rejected answer", meta["rejected"]))
    for what, text in texts:
        if len(text) * 4 > max_field_bytes and len(text.encode("utf-8", "replace")) > max_field_bytes:  # ≤ 4 B/char
            return f"{what} is over the {max_field_bytes}-byte limit (extract.max_line_bytes)"
    return None


def _preference_row(row: dict, shape: Shape, t: Table, max_field_bytes: int):
    rec = {}
    for key, col in shape.preference.items():
        value = row.get(col)
        names = t.class_names.get(col)
        if names is not None and isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            value = names[value]  # a ClassLabel label column: its name ("true"/"false")
        rec[key] = value
    found = preference_found(rec)
    if found.messages is None:
        return [("", None, found.code, found.reason, {})]
    big = _too_big(found.messages, found.meta, max_field_bytes)
    if big:
        return [("", None, "too-large", big, {})]
    return [("", found.messages, "", "", found.meta)]


def _row_examples(row: dict, shape: Shape, t: Table, max_field_bytes: int):
    """[(label, messages or None, code, reason, meta)] for one row."""
    if shape.kind == "preference":
        return _preference_row(row, shape, t, max_field_bytes)
    return [(*found, {}) for found in _sft_row(row, shape, t, max_field_bytes)]


def _sft_row(row: dict, shape: Shape, t: Table, max_field_bytes: int):
    """[(label, messages or None, code, reason)] for one row of an SFT shape."""
    if shape.kind == "records":
        if shape.system and shape.system != "system":
            row = {**row, "system": row.get(shape.system)}
        return [(f.label, f.messages, f.code, f.reason) for f in examples_of(row)]
    system = None
    if shape.system:
        system, why = _text(row.get(shape.system), shape.system, None)
        if system is None:
            return [("", None, "bad-record", why)]
    if shape.kind == "chat":
        value = row.get(shape.chat)
        if value in (None, [], ""):
            return [("", None, "empty", f"{shape.chat!r} is empty")]
        msgs = coerce_messages(value)
        if msgs is None:
            return [("", None, "bad-record", f"{shape.chat!r} is not a list of {{role, content}} turns with known "
                                             f"roles")]
        if system and system.strip() and msgs[0]["role"] != "system":
            msgs = normalize_messages([{"role": "system", "content": system}]) + msgs
    else:
        cells = {}
        for col in (shape.prompt, shape.response, shape.extra):
            if col is None:
                continue
            text, why = _text(row.get(col), col, t.class_names.get(col))
            if text is None:
                return [("", None, "bad-record", why)]
            cells[col] = text
        for col in (shape.prompt, shape.response):
            if not cells[col].strip():
                return [("", None, "empty", f"empty {col!r} value")]
        prompt = cells[shape.prompt]
        if shape.extra and cells.get(shape.extra, "").strip():
            prompt = f"{prompt}\n\n{cells[shape.extra]}"
        msgs = messages_from_pair(prompt, cells[shape.response], system)
    too_big = _too_big(msgs, {}, max_field_bytes)
    if too_big:
        return [("", None, "too-large", too_big)]
    empty = empty_turn(msgs)
    if empty:
        return [("", None, "empty", empty)]
    return [("", msgs, "", "")]


def extract_dataset(path: str | Path, max_field_bytes: int, progress: Progress | None = None, *,
                    split: str | None = None, prompt_column: str | None = None, response_column: str | None = None,
                    system_column: str | None = None, messages_column: str | None = None, limit: int | None = None,
                    prefer: tuple[str, ...] = TRAIN_SPLITS, source_kind: str = "dataset") -> Extraction:
    """Examples from the rows of a Parquet/Arrow file or a dataset folder. `split` picks a split of a folder
    (default: the first of `prefer` there is, or the only one); the columns flags pick the shape (default: detected
    from the column names); `limit` reads at most that many rows. A split or column that is not there raises
    ExtractError naming the ones there are; `result.survey` says which split, shape and columns were read."""
    path = Path(path)
    result = Extraction()
    tables, splits, chosen = open_tables(path, split, prefer, result)
    total = sum(t.rows or 0 for t in tables)
    if limit is not None:
        total = min(total, limit)
    shapes = []
    done = 0
    for n, t in enumerate(tables):
        where = f"{path}" + (f" [{t.split}]" if path.is_dir() else "")
        try:
            shape = pick_shape(t.columns, where, prompt_column, response_column, system_column, messages_column)
        except ExtractError as e:
            if n == 0:
                raise
            result.skip(t.where, f"other columns than the first shard: {e}", "bad-record")  # a stray shard
            continue
        shapes.append(shape.describe())
        i = 0
        try:
            for batch in t.batches():
                for row in batch:
                    if limit is not None and done >= limit:
                        break
                    try:
                        found = _row_examples(row, shape, t, max_field_bytes)
                    except Exception as e:  # noqa: BLE001 - one row a converter chokes on never stops the rest
                        found = [("", None, "parser-error", describe_error(e), {})]
                    for label, msgs, code, reason, meta in found:
                        if msgs is None:
                            result.skip(f"{t.where}:{i}" + (f" ({label})" if label else ""), reason, code)
                            continue
                        item = {"extract_key": f"{source_kind}:{t.label}:{example_key(msgs, meta)}",
                                "source_kind": source_kind, "source_ref": f"{t.label}:{i}", "line": i, "tags": [],
                                "messages": msgs}
                        if meta:
                            item["meta"] = meta
                        result.items.append(item)
                    i += 1
                    done += 1
                    result.read += 1
                if limit is not None and done >= limit:
                    break
                if progress:
                    progress(done, total)
        except Exception as e:  # noqa: BLE001 - a damaged file: what was read stays, the rest is reported
            result.skip(f"{t.where}:{i}", f"cannot read from row {i} on: {describe_error(e)}", "unreadable")
        if limit is not None and done >= limit:
            break
    if progress:
        progress(total, total)
    result.survey = {"split": chosen, "splits": splits, "columns": tables[0].columns if tables else [],
                     "shape": shapes[0] if shapes else None, "rows": total}
    return result
