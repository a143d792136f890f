"""Shared pieces of the extractors: reading text in whatever encoding a file arrived in, and the report of what
was skipped and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from forge.validate import ROLES, normalize_messages

Progress = Callable[[int, int], None]


@dataclass
class Skipped:
    source: str
    reason: str

    def to_json(self) -> dict:
        return {"source": self.source, "reason": self.reason}


@dataclass
class Extraction:
    """What an extractor found: items ready for Store.ingest, and the items it skipped."""

    items: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append(Skipped(source, reason))


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Text and the encoding it was read with: UTF-8 (with or without BOM), UTF-16 with BOM, else the best guess of
    charset-normalizer among the single-byte encodings people's exports come in (cp1252, latin-1, ...)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:200_000], cp_isolation=["cp1252", "latin_1", "iso8859_15", "cp1250", "mac_roman"]).best()
    encoding = best.encoding if best else "cp1252"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"  # every byte is valid latin-1: never fails


def read_text(path: Path) -> tuple[str, str]:
    return decode_bytes(path.read_bytes())


def messages_from_pair(prompt: str, response: str, system: str | None = None) -> list[dict]:
    msgs = []
    if system and system.strip():
        msgs.append({"role": "system", "content": system})
    msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return normalize_messages(msgs)


def coerce_messages(value: object) -> list[dict] | None:
    """A list of {role, content} dicts (OpenAI/HF chat shape, `from`/`value` ShareGPT shape too) or None."""
    if not isinstance(value, list) or not value:
        return None
    out = []
    aliases = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}
    for m in value:
        if not isinstance(m, dict):
            return None
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        role = aliases.get(role, role)
        if role not in ROLES or not isinstance(content, str):
            return None
        out.append({"role": role, "content": content})
    return normalize_messages(out)


def record_to_messages(obj: object) -> list[dict] | None:
    """The conversation inside one record of the common LLM-output shapes, or None if it is none of them:
    {"messages": [...]}, Alpaca {instruction, input, output}, {input, output}, {prompt, completion|response},
    {question, answer}."""
    if not isinstance(obj, dict):
        return None
    for key in ("messages", "conversations", "conversation"):
        if key in obj:
            return coerce_messages(obj[key])
    system = obj.get("system") if isinstance(obj.get("system"), str) else None
    if isinstance(obj.get("instruction"), str) and isinstance(obj.get("output"), str):
        extra = obj.get("input")
        prompt = obj["instruction"] + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else "")
        return messages_from_pair(prompt, obj["output"], system)
    for p, r in (("input", "output"), ("prompt", "completion"), ("prompt", "response"), ("question", "answer")):
        if isinstance(obj.get(p), str) and isinstance(obj.get(r), str):
            return messages_from_pair(obj[p], obj[r], system)
    return None
