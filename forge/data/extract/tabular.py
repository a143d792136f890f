"""CSV and TSV files → conversations, with encoding detection and configurable prompt/response/system columns. A
header with chosen/rejected (DPO pairs) or completion/label (KTO) columns is read as preference rows (preference.py)."""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

from forge.config import CsvConfig
from forge.data.extract.common import (PROMPT_LIKE, Extraction, ExtractError, Progress, decode_bytes,
                                       messages_from_pair, over_limit)
from forge.data.extract.preference import example_key, preference_columns, preference_found

TSV_SUFFIXES = (".tsv", ".tab")

# Column pairs seen in the seed projects, tried in order when no columns are configured.
KNOWN_PAIRS = [("prompt", "response"), ("prompt", "completion"), ("instruction", "output"), ("input", "output"),
               ("question", "answer"), ("transcript", "summary"), ("text", "summary")]


def _pick_columns(header: list[str], cfg: CsvConfig, prompt: str | None, response: str | None):
    lower = {h.strip().lower(): h for h in header}
    prompt, response = prompt or cfg.prompt_column, response or cfg.response_column
    if prompt or response:
        missing = [c for c in (prompt, response) if c is None or (c not in header and c.lower() not in lower)]
        if missing:
            raise ExtractError(f"column {missing[0]!r} not found; the header has: {', '.join(header)}" if missing[0]
                           else "give both --prompt-column and --response-column")
        return lower.get(prompt.lower(), prompt), lower.get(response.lower(), response)
    for p, r in KNOWN_PAIRS:
        if p in lower and r in lower:
            return lower[p], lower[r]
    raise ExtractError(f"cannot tell which columns hold the prompt and the response (header: {', '.join(header)}); "
                   f"pass --prompt-column and --response-column")


def _misfits(text: str, quoting: int) -> int:
    """How many rows of a tab-separated text look wrong read this way: not the header's number of fields, or a field
    running over a line end."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=quoting)
    try:
        width = len(next(reader))
    except (StopIteration, csv.Error):
        return 0
    bad = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return bad
        except csv.Error:
            bad += 1
            continue
        bad += bool(row) and (len(row) != width or any("\n" in f or "\r" in f for f in row))


def tsv_quoting(text: str) -> int:
    """Whether a TSV quotes its fields (as pandas and Excel write them: tabs and newlines inside "…") or takes quotes
    as plain text (as tab-separated corpora such as MRPC do: `" The pie business …` opens no quoted field). Read the
    wrong way, a stray quote swallows the rows after it into one field, or quoted tabs split a field: the way that
    leaves fewer rows of the wrong width or spanning lines wins, quoted on a tie."""
    if '"' not in text:
        return csv.QUOTE_MINIMAL
    return csv.QUOTE_NONE if _misfits(text, csv.QUOTE_NONE) < _misfits(text, csv.QUOTE_MINIMAL) else csv.QUOTE_MINIMAL


def extract_csv(path: str | Path, cfg: CsvConfig, max_file_bytes: int, max_field_bytes: int,
                prompt_column: str | None = None, response_column: str | None = None,
                system_column: str | None = None, progress: Progress | None = None) -> Extraction:
    path = Path(path)
    result = Extraction()
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            result.skip(str(path), over_limit(size, max_file_bytes), "too-large")
            return result
        text, _ = decode_bytes(path.read_bytes())
    except OSError as e:
        result.skip(str(path), f"cannot read: {e.strerror or e}")
        return result
    csv.field_size_limit(min(max_field_bytes, sys.maxsize))
    # A .tsv/.tab file is tab-separated whatever its header holds; otherwise the delimiter is the one the header line
    # uses most (the csv Sniffer misreads prose-heavy rows).
    first = text.split("\n", 1)[0]
    offset = 0  # lines before the header that the reader does not see
    if (sep := re.fullmatch(r"\s*sep=(\S)\s*", first)) is not None:
        # Excel's "sep=;" line names the delimiter (European exports write it): honour it, then skip it
        delimiter, text, offset = sep.group(1), text.split("\n", 1)[1] if "\n" in text else "", 1
    elif path.suffix.lower() in TSV_SUFFIXES:
        delimiter = "\t"
    else:
        delimiter = max([",", ";", "\t", "|"], key=first.count) if any(d in first for d in ",;\t|") else ","
    quoting = tsv_quoting(text) if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        result.skip(str(path), "no header row")
        return result
    named = prompt_column or response_column or cfg.prompt_column or cfg.response_column
    pref = preference_columns(header) if not named else None
    if pref is not None:
        lower = {h.strip().lower(): h for h in header}
        prompt = pref.get("prompt") or next((lower[k] for k in (*PROMPT_LIKE, "instruction") if k in lower), None)
        pref = {**pref, **({"prompt": prompt} if prompt else {})}
        if system_column or cfg.system_column:
            pref["system"] = system_column or cfg.system_column
        return _preference_rows(path, reader, header, pref, offset, text, result, progress)
    try:
        pcol, rcol = _pick_columns(header, cfg, prompt_column, response_column)
    except ExtractError as e:
        result.skip(str(path), str(e))
        return result
    scol = system_column or cfg.system_column
    if scol and scol not in header:
        result.skip(str(path), f"system column {scol!r} not found; the header has: {', '.join(header)}")
        return result
    for col in dict.fromkeys(c for c in (pcol, rcol, scol) if c):
        if header.count(col) > 1:
            where = ", ".join(str(i + 1) for i, h in enumerate(header) if h == col)
            result.skip(str(path), f"the header names {col!r} more than once (columns {where}): rename one, or "
                                   f"pass --prompt-column/--response-column")
            return result
    idx = {h: i for i, h in enumerate(header)}
    extra = idx.get("input") if pcol.lower() == "instruction" else None
    total = max(text.count("\n"), 1)
    for at, row in _data_rows(path, reader, header, offset, result):
        where = f"{path}:{at}"
        prompt, response = row[idx[pcol]], row[idx[rcol]]
        if extra is not None and row[extra].strip():
            prompt = f"{prompt}\n\n{row[extra]}"
        if not prompt.strip() or not response.strip():
            result.skip(where, f"empty {pcol if not prompt.strip() else rcol!r} value")
            continue
        try:
            user = cfg.prompt_template.format(prompt=prompt)
        except (KeyError, IndexError, ValueError):
            user = prompt
        msgs = messages_from_pair(user, response, row[idx[scol]] if scol else None)
        result.items.append({
            "extract_key": f"csv:{path.name}:{example_key(msgs)}",
            "source_kind": "csv", "source_ref": f"{path.name}:{at}",
            "line": at, "tags": [], "messages": msgs,
        })
        if progress and len(result.items) % 500 == 0:
            progress(reader.line_num, total)
    if progress:
        progress(total, total)
    return result


def _data_rows(path: Path, reader, header: list[str], offset: int, result: Extraction):
    """(file line, row padded to the header's width) for each non-blank row; a row the csv module cannot parse is
    a skip naming its line. Counts the rows read (blank lines are not rows) in result.read."""
    line = reader.line_num + 1 + offset
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            result.skip(f"{path}:{line}", f"bad CSV row: {e}")
            result.read += 1
            line = reader.line_num + 1 + offset
            continue
        at, line = line, reader.line_num + 1 + offset
        if not any(c.strip() for c in row):
            continue
        result.read += 1
        yield at, row + [""] * (len(header) - len(row))


def _preference_rows(path: Path, reader, header: list[str], cols: dict[str, str], offset: int, text: str,
                     result: Extraction, progress: Progress | None) -> Extraction:
    """The rows of a preference CSV: each a pair or KTO-labelled example, or a skip naming its line."""
    idx = {h: i for i, h in enumerate(header)}
    missing = next((c for c in cols.values() if c not in idx), None)
    if missing is not None:
        result.skip(str(path), f"column {missing!r} not found; the header has: {', '.join(header)}")
        return result
    total = max(text.count("\n"), 1)
    for at, row in _data_rows(path, reader, header, offset, result):
        found = preference_found({k: row[idx[c]] for k, c in cols.items()})
        if found.messages is None:
            result.skip(f"{path}:{at}", found.reason, found.code)
            continue
        result.items.append({"extract_key": f"csv:{path.name}:{example_key(found.messages, found.meta)}",
                             "source_kind": "csv", "source_ref": f"{path.name}:{at}", "line": at, "tags": [],
                             "messages": found.messages, "meta": found.meta})
        if progress and len(result.items) % 500 == 0:
            progress(reader.line_num, total)
    if progress:
        progress(total, total)
    return result
