"""Whitespace normalisation and the checks every example must pass before approval.

Normalisation never touches text inside fenced code blocks or inside markers like `{{RED:text}}` (the therapy-notes
seed uses them for risk markers, which must survive every step byte for byte).
"""

from __future__ import annotations

import re
from functools import lru_cache

MARKER_RE = re.compile(r"\{\{[A-Za-z][A-Za-z0-9_-]*:.*?\}\}", re.DOTALL)
FENCE_RE = re.compile(r"^(```|~~~)")
ROLES = ("system", "user", "assistant")

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\t\u3000\u2002\u2003\u2009"), " ")


def _normalize_plain(text: str) -> str:
    text = text.translate(_INVISIBLE).translate(_SPACES)
    # Collapse runs of spaces inside a line but keep leading indentation (lists, quotes).
    text = re.sub(r"(?<=\S) {2,}(?=\S)", " ", text)
    text = re.sub(r" +\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text)


def _normalize_prose(text: str) -> str:
    """Normalise text outside code fences, leaving markers verbatim."""
    out, pos = [], 0
    for m in MARKER_RE.finditer(text):
        out.append(_normalize_plain(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_normalize_plain(text[pos:]))
    return "".join(out)


def normalize_text(text: str) -> str:
    """CRLF/CR → LF, odd spaces → space, runs of spaces collapsed, trailing spaces and extra blank lines
    removed, ends stripped. Idempotent. Code fences and {{MARKER:...}} spans are kept exactly."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    chunks: list[tuple[str, list[str]]] = []
    buf: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if FENCE_RE.match(line.lstrip()):
            if not in_code:
                if buf:
                    chunks.append(("prose", buf))
                buf, in_code = [line], True
            else:
                chunks.append(("code", buf + [line]))
                buf, in_code = [], False
            continue
        buf.append(line)
    if buf:
        chunks.append(("code" if in_code else "prose", buf))
    out: list[str] = []
    for i, (kind, lines) in enumerate(chunks):
        if kind == "code":
            out.append("\n".join(lines))
            continue
        prose = _normalize_prose("\n".join(lines))
        if i > 0:  # after a code block: at most one blank line
            prose = ("\n" if prose.startswith("\n") else "") + prose.lstrip("\n")
        if i < len(chunks) - 1:  # before a code block: likewise
            prose = prose.rstrip("\n") + ("\n" if prose.endswith("\n") else "")
        out.append(prose)
    return "\n".join(out).strip()


def normalize_messages(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": normalize_text(m["content"])} for m in messages]


@lru_cache(maxsize=4)
def _load_tokenizer(path: str):
    from transformers import AutoTokenizer  # heavy: only when a tokenizer is configured

    return AutoTokenizer.from_pretrained(path)


def count_length(messages: list[dict], tokenizer: str | None = None) -> tuple[int, str]:
    """Length of a conversation in tokens (with a tokenizer) or words, and the unit used."""
    if tokenizer:
        tok = _load_tokenizer(tokenizer)
        return sum(len(tok.encode(m["content"], add_special_tokens=False)) for m in messages), "tokens"
    return sum(len(m["content"].split()) for m in messages), "words"


def validate_messages(messages: object, max_length: int = 2048, tokenizer: str | None = None) -> list[str]:
    """Every reason this conversation cannot be approved; empty when it can."""
    if not isinstance(messages, list) or not messages:
        return ["the conversation has no messages"]
    problems = []
    expected = "user"
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            problems.append(f"message {i} needs a role and a text content")
            continue
        role = m.get("role")
        if role not in ROLES:
            problems.append(f"message {i} has role {role!r}; use system, user or assistant")
            continue
        if not m["content"].strip():
            problems.append(f"message {i} ({role}) is empty")
        if role == "system":
            if i != 1:
                problems.append(f"message {i}: a system message may only come first")
            continue
        if role != expected:
            problems.append(f"message {i} is {role} but {expected} was expected (turns must alternate, "
                            f"starting with user)")
        expected = "assistant" if role == "user" else "user"
    if not problems and messages[-1].get("role") != "assistant":
        problems.append("the conversation must end with an assistant turn")
    if not problems:
        n, unit = count_length(messages, tokenizer)
        if n > max_length:
            problems.append(f"too long: {n} {unit} (limit {max_length})")
    return problems
