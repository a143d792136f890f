"""LLM output → conversations. Accepts JSONL (or a JSON array) of the common shapes: {"messages": [...]}, Alpaca,
ChatGPT's and Claude's data exports (conversations.json: one example per conversation),
{input, output}, {prompt, completion}, Self-Instruct seed tasks (one example per instance), OpenAI chat-completion
objects whose message content holds one of those, and JSON inside ```json fences, as models like to write it.
Preference rows (prompt/chosen/rejected, HH-RLHF transcripts, KTO prompt/completion/label: see preference.py) become
pair and KTO-labelled examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

from forge.data.extract.common import Extraction, Progress, decode_bytes, describe_error, over_limit
from forge.data.extract.preference import example_key, records_examples

FENCE_RE = re.compile(r"```(?:json|jsonl)?\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def parse_json_text(text: str) -> list:
    """JSON values in a model's reply: a fenced block, a whole JSON document, or JSON lines."""
    text = text.strip()
    blocks = FENCE_RE.findall(text) or [text]
    values: list = []
    for block in blocks:
        try:
            values.append(json.loads(block))
            continue
        except json.JSONDecodeError:
            pass
        for line in block.splitlines():
            line = line.strip().rstrip(",")
            if line.startswith(("{", "[")):
                try:
                    values.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return values


def records_of(value: object) -> list:
    """Flatten a parsed value into candidate records, unwrapping chat-completion objects."""
    if isinstance(value, list):
        return [r for v in value for r in records_of(v)]
    if isinstance(value, dict) and isinstance(value.get("choices"), list):
        out = []
        for choice in value["choices"]:
            msg = choice.get("message") if isinstance(choice, dict) else None
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, str):
                out += records_of(parse_json_text(content))
        return out
    if isinstance(value, dict) and isinstance(value.get("examples"), list):
        return records_of(value["examples"])
    return [value]


def extract_jsonl(path: str | Path, max_file_bytes: int, max_line_bytes: int,
                  progress: Progress | None = None, source_kind: str = "jsonl") -> Extraction:
    path = Path(path)
    result = Extraction()
    try:
        size = path.stat().st_size
    except OSError as e:
        result.skip(str(path), f"cannot read: {e.strerror or e}")
        return result
    if size > max_file_bytes:
        result.skip(str(path), over_limit(size, max_file_bytes), "too-large")
        return result

    def add(value: object, line: int) -> None:
        recs = records_of(value)
        result.read += max(len(recs), 1)  # records read
        if not recs:
            result.skip(f"{path}:{line}", "no examples inside this record")
        for rec in recs:
            try:
                founds = records_examples(rec)  # a Self-Instruct task gives one per instance
            except Exception as e:  # noqa: BLE001 - one record a shape reader chokes on never stops the file
                result.skip(f"{path}:{line}", f"could not be read ({describe_error(e)})", "parser-error")
                continue
            for found in founds:
                if found.messages is None:
                    where = f"{path}:{line}" + (f" ({found.label})" if found.label else "")
                    result.skip(where, found.reason, found.code)
                    continue
                msgs = found.messages
                ref = f"{path.name}:{line}" + (f" ({found.label})" if found.label.startswith("conversation") else "")
                item = {"extract_key": f"{source_kind}:{path.name}:{example_key(msgs, found.meta)}",
                        "source_kind": source_kind, "source_ref": ref, "line": line, "tags": [], "messages": msgs}
                if found.meta:
                    item["meta"] = found.meta
                result.items.append(item)

    with open(path, "rb") as f:
        raw = f.read()
    text, _ = decode_bytes(raw)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    stripped = text.lstrip()
    if stripped.startswith("["):  # a whole JSON array
        try:
            add(json.loads(stripped), 1)
            return result
        except json.JSONDecodeError:
            pass
    lines = text.split("\n")
    i, n = 0, len(lines)
    while i < n:
        line_no, line = i + 1, lines[i].strip()
        i += 1
        if not line:
            continue
        if line.startswith("```"):  # a fenced block: parse its body as one JSON value or as JSON lines
            start = i
            while i < n and not lines[i].strip().startswith("```"):
                i += 1
            body = "\n".join(lines[start:i])
            i += 1
            values = parse_json_text(body)
            if not values:
                result.skip(f"{path}:{line_no}", "fenced block holds no JSON")
            for v in values:
                add(v, line_no)
            continue
        if len(line) > max_line_bytes:
            result.skip(f"{path}:{line_no}", f"line is over the {max_line_bytes}-byte limit (extract.max_line_bytes)")
            result.read += 1
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            result.skip(f"{path}:{line_no}", f"not valid JSON: {e.msg} at column {e.colno}")
            result.read += 1
            continue
        add(value, line_no)
        if progress and line_no % 1000 == 0:
            progress(line_no, n)
    if progress:
        progress(n, n)
    return result
