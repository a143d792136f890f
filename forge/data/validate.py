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
_PLACEHOLDER_RE = re.compile("\ue000(\\d+)\ue001")

_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2007\u202f\t\u3000\u2002\u2003\u2009"), " ")
# str.translate looks every character up in its table (~0.1 s a MB of non-ASCII text); a regex finds the few odd ones
_ODD_RE = re.compile("[" + "".join(map(chr, {**_INVISIBLE, **_SPACES})) + "]")
_ODD = {chr(k): v or "" for k, v in {**_INVISIBLE, **_SPACES}.items()}


_RUN_RE = re.compile(r"(?<=\S) {2,}(?=\S)")
_TRAILING_RE = re.compile(r" +\n")
_BLANKS_RE = re.compile(r"\n{3,}")


def _normalize_plain(text: str) -> str:
    if not text.isascii():
        text = _ODD_RE.sub(lambda m: _ODD[m.group()], text)
    elif "\t" in text:
        text = text.replace("\t", " ")
    # Collapse runs of spaces inside a line but keep leading indentation (lists, quotes). The `in` checks
    # skip the regex scans for the usual already-clean text.
    if "  " in text:
        text = _RUN_RE.sub(" ", text)
    if " \n" in text:
        text = _TRAILING_RE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANKS_RE.sub("\n\n", text)
    return text


def normalize_text(text: str) -> str:
    """CRLF/CR → LF, odd spaces → space, runs of spaces collapsed, trailing spaces and extra blank lines
    removed, ends stripped. Idempotent. Code fences and {{MARKER:...}} spans are kept exactly."""
    if "{{" not in text and "```" not in text and "~~~" not in text and "\ue000" not in text:
        return _normalize_plain(text.replace("\r\n", "\n").replace("\r", "\n")).strip()  # the common case
    # Markers are swapped for placeholders that no rule touches, and put back at the end.
    markers: list[str] = []
    pieces, pos = [], 0
    for m in MARKER_RE.finditer(text):
        pieces.append(text[pos:m.start()].replace("\ue000", "").replace("\ue001", ""))
        pieces.append(f"\ue000{len(markers)}\ue001")
        markers.append(m.group(0))
        pos = m.end()
    pieces.append(text[pos:].replace("\ue000", "").replace("\ue001", ""))
    text = "".join(pieces)
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
        prose = _normalize_plain("\n".join(lines))
        if i > 0:  # after a code block: at most one blank line
            prose = ("\n" if prose.startswith("\n") else "") + prose.lstrip("\n")
        if i < len(chunks) - 1:  # before a code block: likewise
            prose = prose.rstrip("\n") + ("\n" if prose.endswith("\n") else "")
        out.append(prose)
    result = "\n".join(out).strip()
    return _PLACEHOLDER_RE.sub(lambda m: markers[int(m.group(1))], result) if markers else result


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
