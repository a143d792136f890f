"""Obsidian vault (or Logseq graph) → conversations.

A note carrying one of the include tags (and inside the chosen folders) becomes a conversation: the user turn from
frontmatter `prompt:` or a template over the title, the assistant turn the body with frontmatter removed, wikilinks
rendered as text, embeds dropped and code kept. A note longer than `max_tokens` tokens of the base model's
tokenizer is split at its headings (then paragraphs, then lines) into examples that fit, each keeping its heading
path and note reference; short sections merge with their neighbours; no text is dropped.

Every file of the vault is accounted for: an example, or a skip with a reason code (see common.SKIP_CODES). One
note that a parser library chokes on is skipped with its path; it never stops the import. The same pass surveys
the vault (notes per folder, tags with counts), so a filter that matched nothing can say which tags there are.
"""

from __future__ import annotations

import bisect
import os
import re
from collections import Counter
from pathlib import Path
from typing import Callable

import frontmatter
import yaml

from forge.config import ObsidianConfig
from forge.data.extract.common import Extraction, Progress, decode_bytes, describe_error, over_limit
from forge.data.validate import normalize_text

TokenCount = Callable[[str], int]

CODE_RE = re.compile(r"(^|\n)(```|~~~)[^\n]*\n.*?(\n\2[^\n]*(?=\n|$)|$)|`[^`\n]+`", re.DOTALL)
TAG_RE = re.compile(r"(?<![^\s(,])#([\w/-]+)")
EMBED_RE = re.compile(r"!\[\[[^\]\n]*\]\]")
LINK_RE = re.compile(r"\[\[([^\]|\n]*?)(?:\|([^\]\n]*))?\]\]")
_NUMERIC_TAG = re.compile(r"[\d/-]+")
H1_RE = re.compile(r"^# +(.+?)\s*#*\s*$", re.MULTILINE)
H2_RE = re.compile(r"^## +(.+?)\s*#*\s*$", re.MULTILINE)
HEADING_RE = re.compile(r"^(#{1,6}) +(.+?)\s*#*\s*$", re.MULTILINE)
# Tokens the chat template adds around one user and one assistant turn (SmolLM2's default system prompt included).
TEMPLATE_OVERHEAD_TOKENS = 40


def _outside_code(text: str, fn) -> str:
    """Apply fn to the parts of text that are not fenced or inline code."""
    if "`" not in text and "~~~" not in text:
        return fn(text)
    out, pos = [], 0
    for m in CODE_RE.finditer(text):
        out.append(fn(text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(fn(text[pos:]))
    return "".join(out)


_CODE_OR_COMMENT_RE = re.compile(CODE_RE.pattern + r"|%%", re.DOTALL)


def strip_comments(text: str) -> str:
    """The text without its Obsidian comments (`%%…%%`, inline or over many lines, hidden in Obsidian's reading
    view; the next `%%` closes one, an unclosed one runs to the end), each replaced by its newlines so line numbers
    still match. `%%` inside code is text; a code block inside a comment is part of the comment, and a `%%` inside
    that code block closes the comment (Obsidian is ambiguous there; JSON scenes in drawings never hold one)."""
    if "%%" not in text:
        return text
    out, pos = [], 0
    while (m := _CODE_OR_COMMENT_RE.search(text, pos)) is not None:
        if m.group(0) != "%%":  # code: kept as it is
            out.append(text[pos:m.end()])
            pos = m.end()
            continue
        out.append(text[pos:m.start()])
        close = text.find("%%", m.end())
        end = len(text) if close < 0 else close + 2
        out.append("\n" * text.count("\n", m.start(), end))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def mask_code(text: str) -> str:
    """The text with every code span blanked to spaces (newlines kept), so offsets and line numbers still match
    but nothing inside code is taken for a tag or a heading."""
    if "`" not in text and "~~~" not in text:
        return text
    return CODE_RE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def inline_tags(body: str, masked: str | None = None) -> list[str]:
    masked = mask_code(body) if masked is None else masked
    # Obsidian tags need at least one character that is not a digit: #2026 is not a tag.
    return [t for t in TAG_RE.findall(masked) if not _NUMERIC_TAG.fullmatch(t)] if "#" in masked else []


def frontmatter_tags(meta: dict) -> list[str]:
    raw = meta.get("tags", meta.get("tag"))
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = re.split(r"[,\s]+", raw)
    if not isinstance(raw, list):
        raw = [raw]
    tags = (str(t).strip().lstrip("#") for t in raw if t is not None and not isinstance(t, (dict, list)))
    # As in Obsidian: a tag needs one character that is not a digit, in frontmatter too (`tags: [2026]`).
    return [t for t in tags if t and not _NUMERIC_TAG.fullmatch(t)]


def _render_link(m: re.Match) -> str:
    target, alias = m.group(1), m.group(2)
    if alias is not None and alias.strip():
        return alias.strip()
    page, _, sub = target.partition("#")
    page = page.strip().split("/")[-1]
    if page.endswith(".md"):
        page = page[:-3]
    return page or sub.lstrip("^").strip()


# A block id (`^id`, what a block reference points at) ending a line or alone on one: hidden in reading view.
BLOCK_ID_RE = re.compile(r"(?:(?<=\S)[ \t]+|^[ \t]*)\^[A-Za-z0-9-]+[ \t]*(?=\n)", re.MULTILINE)
TAG_LINE_RE = re.compile(r"^[ \t]*#[\w/-]+(?:[ \t]+#[\w/-]+)*[ \t]*$", re.MULTILINE)
TRAILING_TAGS_RE = re.compile(r"(?<=\S)(?:[ \t]+#[\w/-]+)+[ \t]*$", re.MULTILINE)


# Markdown-style links between notes (Obsidian's other link format; Notion exports use only these) read as their
# text, like wikilinks; a local image is dropped, like an embed. Links to the web stay as written.
MD_IMAGE_RE = re.compile(r"!\[[^\]\n]*\]\((?!https?:|data:)[^)\n]*\)")
MD_NOTE_LINK_RE = re.compile(r"(?<!!)\[([^\]\n]+)\]\((?!https?:)[^)\n]*?\.md(?:#[^)\n]*)?\)")


def _render_prose(seg: str) -> str:
    if "[[" in seg:
        seg = LINK_RE.sub(_render_link, EMBED_RE.sub("", seg))
    if "](" in seg:
        seg = MD_NOTE_LINK_RE.sub(r"\1", MD_IMAGE_RE.sub("", seg))
    if "#" in seg:
        # Tags are metadata, not something the person would say: drop tag-only lines and tags ending a line.
        seg = TRAILING_TAGS_RE.sub("", TAG_LINE_RE.sub("", seg))
    if "^" in seg:
        seg = BLOCK_ID_RE.sub("", seg)
    return seg


def render_body(body: str) -> str:
    """Wikilinks and markdown links to notes as their text; embeds, local images, tag-only lines and block ids
    dropped; code and links to the web untouched."""
    # A block id ends a line; with a newline after the last one, a piece of prose that stops where inline code
    # starts is not taken for a line's end.
    return _outside_code(body + "\n", _render_prose)[:-1]


def tag_matches(tags: list[str], include: list[str]) -> bool:
    if not include:
        return True
    inc = [t.lower().lstrip("#") for t in include]
    return any(t == i or t.startswith(i + "/") for t in tags for i in inc)


def _fill(template: str, **values: str) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return template


def _sections(body: str) -> list[tuple[str | None, int, str]]:
    """(heading, line offset within body, text) per H2 section; text before the first H2 has heading None.
    Used by the legacy `split_h2_over_words` setting."""
    masked = mask_code(body)  # H2 lines inside code blocks must not split
    marks = [(m.start(), m.group(1)) for m in H2_RE.finditer(masked)]
    out = []
    if not marks or marks[0][0] > 0:
        end = marks[0][0] if marks else len(body)
        out.append((None, 0, body[:end]))
    line, counted = 0, 0
    for i, (start, heading) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(body)
        text = body[start:end].split("\n", 1)
        line += body.count("\n", counted, start)
        counted = start
        out.append((heading.strip(), line, text[1] if len(text) > 1 else ""))
    return out


# ---- chunking ------------------------------------------------------------------------------------------------
# Chunking a long note tokenizes each heading section once and packs its paragraphs (lines, sentences, words) by
# positions in that one tokenization. Counting every growing candidate afresh, as it once did, made the work grow
# with the square of a section's length: a 1 MB note took dozens of tokenizer passes, a section without paragraph
# breaks hundreds. What is decided from positions is counted for real before it is kept, unless the tokenizer's
# counts provably add up there (forge.data.tokens.TokenCounter.additive), so every chunk still fits its budget.
def heading_sections(body: str, masked: str) -> list[tuple[list[str], int, int, str]]:
    """(heading path, heading level, line offset, section text without its heading line) for every heading of any
    level, in order; text before the first heading has path []. Headings inside code never split."""
    marks = [(m.start(), len(m.group(1)), m.group(2).strip()) for m in HEADING_RE.finditer(masked)]
    out: list[tuple[list[str], int, int, str]] = []
    first = marks[0][0] if marks else len(body)
    if body[:first].strip():
        out.append(([], 0, 0, body[:first]))
    stack: list[tuple[int, str]] = []
    line, counted = 0, 0  # newlines before `counted`, counted once over the note
    for i, (start, level, title) in enumerate(marks):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        end = marks[i + 1][0] if i + 1 < len(marks) else len(body)
        text = body[start:end].split("\n", 1)
        line += body.count("\n", counted, start)
        counted = start
        out.append(([t for _, t in stack], level, line, text[1] if len(text) > 1 else ""))
    return out


def _fits(text: str, budget: int, count: TokenCount) -> bool:
    # A byte-level BPE token covers at least one byte: a text of at most `budget` bytes always fits, uncounted; and
    # at most `max_token_bytes` of them: a text of more than budget × that many bytes never does.
    n = len(text.encode("utf-8"))
    if n <= budget:
        return True
    most = getattr(count, "max_token_bytes", None)
    return not (most and n > budget * most) and count(text) <= budget


_WORD_END_RE = re.compile(r"(?<=\S)[ \n]")  # a clean cut (searched from one past a run's start)
# An estimate this close to the budget is counted for real before it decides (errors seen are a token or two).
NEAR_BUDGET_TOKENS = 4


def _clean_cut(text: str, i: int) -> bool:
    """Whether text splits at i between a non-space character and a space or newline (or at its end), where an
    additive tokenizer's counts add up."""
    return i == len(text) or (0 < i and text[i] in " \n" and not text[i - 1].isspace())


class _Meter:
    """Token counts of runs of one text (a heading section), for packing it.

    With a tokenizer that gives offsets (forge.data.tokens), the text is tokenized once; a run text[a:b] counts as its
    first word (counted for real: a run cut mid-text starts a pre-token that the text's own tokens straddle) plus
    the text's tokens from that word's end to b. Where the tokenizer is additive and both cuts are clean that is
    the run's exact count; elsewhere an estimate, marked so, which the caller counts for real before keeping a
    chunk. With a plain count function every run is counted for real."""

    def __init__(self, text: str, count: TokenCount) -> None:
        self.text, self.count = text, count
        spans = getattr(count, "spans", None)
        self.starts = [s for s, _ in spans(text)] if spans is not None else None
        self.total = len(self.starts) if self.starts is not None else count(text)
        self.additive = self.starts is not None and bool(getattr(count, "additive", False))
        self._heads: dict[int, tuple[int, int]] = {}  # run start → (end of its first word, that word's count)

    def run(self, a: int, b: int, joined: Callable[[], str] | None = None, budget: int | None = None,
            slack: int = 0) -> tuple[int, bool]:
        """(tokens, exact) of text[a:b]; `joined` gives the run's text where its pieces were joined with other
        whitespace than the text has between them, `slack` bytes of it (then the count from positions is an
        estimate). An estimate that close to `budget`, or closer than a few tokens, is replaced by a real count, so
        what fits is decided as a real count would decide it."""
        if self.starts is None:
            return self.count(joined() if joined else self.text[a:b]), True
        if a not in self._heads:  # its first word, leading whitespace included, ends at a clean cut
            m = _WORD_END_RE.search(self.text, a + 1)
            self._heads[a] = (m.start() if m else len(self.text), -1)
        e, head = self._heads[a]
        if e >= b:  # the run is one word: counted as it is
            return self.count(joined() if joined else self.text[a:b]), True
        if head < 0:
            head = self.count(self.text[a:e])
            self._heads[a] = (e, head)
        n = head + bisect.bisect_left(self.starts, b) - bisect.bisect_left(self.starts, e)
        if self.additive and joined is None and _clean_cut(self.text, b):
            return n, True
        if budget is not None and abs(n - budget) <= NEAR_BUDGET_TOKENS + slack:
            return self.count(joined() if joined else self.text[a:b]), True
        return n, False


class _Part:
    """A packed run of units: its text, where it lies in the section, its token count (None: fits by bytes,
    uncounted) and whether that count is exact; `hard` for one unbroken word longer than the budget."""

    __slots__ = ("pieces", "a", "b", "nbytes", "slack", "tokens", "exact", "hard")

    def __init__(self, text: str, a: int, b: int, nbytes: int, tokens: int | None = None, exact: bool = True,
                 hard: bool = False) -> None:
        self.pieces, self.a, self.b, self.nbytes, self.slack = [text], a, b, nbytes, 0  # slack: see _Meter.run
        self.tokens, self.exact, self.hard = tokens, exact, hard

    def close(self, sep: str, meter: _Meter) -> _Part:
        if len(self.pieces) > 1:
            self.pieces = [sep.join(self.pieces)]
        if self.tokens is None and not self.hard:
            text = self.pieces[0]
            self.tokens, self.exact = meter.run(self.a, self.b, (lambda: text) if self.slack else None)
        return self

    @property
    def text(self) -> str:
        return self.pieces[0]


def _split_units(text: str) -> list[tuple[str, int]]:
    """Paragraphs, each with where it starts in text; a fenced code block is kept whole as one unit."""
    units, cur, fence, pos, start = [], [], None, 0, 0
    for para in text.split("\n\n"):
        if not cur:
            start = pos
        cur.append(para)
        pos += len(para) + 2
        for m in re.finditer(r"^[ \t]*(```|~~~)", para, re.MULTILINE):
            fence = None if fence == m.group(1) else (fence or m.group(1))
        if fence is None:
            units.append(("\n\n".join(cur), start))
            cur = []
    if cur:
        units.append(("\n\n".join(cur), start))
    return [u for u in units if u[0].strip()]


def _pieces(text: str, at: int, sep: str) -> list[tuple[str, int]]:
    out, pos = [], at
    for piece in text.split(sep):
        out.append((piece, pos))
        pos += len(piece) + len(sep)
    return out


SENTENCE_END_RE = re.compile(r"(?<=[.!?…])\s+(?=\S)")


def _sentences(text: str, at: int) -> list[tuple[str, int]]:
    out, pos = [], 0
    for m in SENTENCE_END_RE.finditer(text):
        out.append((text[pos:m.start()], at + pos))
        pos = m.end()
    out.append((text[pos:], at + pos))
    return out


def _pack(units: list[tuple[str, int]], sep: str, budget: int, meter: _Meter, stats: dict) -> list[_Part]:
    """Greedy: consecutive units (text, where it starts in the meter's text) joined while they fit. A unit too long
    on its own is split by lines, then sentences, then words (counted as a hard split); nothing is dropped."""
    parts: list[_Part] = []
    cur: _Part | None = None  # the run being packed; one whose text is empty counts as none (it joins nothing)
    for unit, a in units:
        b, nbytes = a + len(unit), len(unit.encode("utf-8"))
        if cur is not None and cur.nbytes:
            total = cur.nbytes + len(sep) + nbytes
            gap = meter.text[cur.b:a]  # what lies between them in the text: `sep`, unless the split took more
            slack = cur.slack + (len(gap.encode("utf-8")) + len(sep) if gap != sep else 0)
            if total <= budget:
                tokens, exact, fits = None, True, True
            else:
                pieces = cur.pieces
                tokens, exact = meter.run(cur.a, b, (lambda: sep.join(pieces + [unit])) if slack else None, budget,
                                          slack)
                fits = tokens <= budget
            if fits:
                cur.pieces.append(unit)
                cur.b, cur.nbytes, cur.slack, cur.tokens, cur.exact = b, total, slack, tokens, exact
                continue
            parts.append(cur.close(sep, meter))
        cur = None
        if nbytes <= budget:
            cur = _Part(unit, a, b, nbytes)
            continue
        tokens, exact = meter.run(a, b, None, budget)
        if tokens <= budget:
            cur = _Part(unit, a, b, nbytes, tokens, exact)
            continue
        if sep == "\n\n" and "\n" in unit.strip():
            sub = _pack(_pieces(unit, a, "\n"), "\n", budget, meter, stats)
        elif sep in ("\n\n", "\n") and len(sentences := _sentences(unit, a)) > 1:
            sub = _pack(sentences, " ", budget, meter, stats)
        elif " " in unit.strip():  # one sentence (or line) over the budget: by words
            stats["hard_splits"] += 1
            sub = _pack(_pieces(unit, a, " "), " ", budget, meter, stats)
        else:  # one unbroken word longer than the budget: kept whole, the trainer's length policy decides
            stats["hard_splits"] += 1
            parts.append(_Part(unit, a, b, nbytes, tokens, exact, hard=True))
            continue
        parts += sub[:-1]
        cur = sub[-1] if sub else None
    if cur is not None and cur.nbytes:
        parts.append(cur.close(sep, meter))
    return parts


class _Chunk:
    """A chunk of a note: heading path, line, level and text, with its token count (None: uncounted) and whether
    that count is exact. `keep`: kept as it is, not held to the budget (one word longer than it; an empty heading's
    title that fitted nowhere else)."""

    __slots__ = ("path", "line", "level", "text", "tokens", "exact", "keep")

    def __init__(self, path: list[str], line: int, level: int, text: str, tokens: int | None = None,
                 exact: bool = True, keep: bool = False) -> None:
        self.path, self.line, self.level, self.text, self.tokens, self.exact = path, line, level, text, tokens, exact
        self.keep = keep

    def counted(self, count: TokenCount) -> int:
        if self.tokens is None or not self.exact:
            self.tokens, self.exact = count(self.text), True
        return self.tokens

    def merge(self, text: str, tokens: int | None, exact: bool) -> None:
        self.text, self.tokens, self.exact, self.keep = text, tokens, exact, False


def _joined(left: _Chunk, middle: str, right: _Chunk, whole: str, budget: int,
            count: TokenCount) -> tuple[int, bool]:
    """(tokens, exact) of `whole`, which is left.text + middle + right.text (middle starts with a newline) unless
    stripping its ends changed it, from the two texts' counts: for an additive tokenizer only the middle and the
    right text's first word are counted, so merging many short sections into one chunk stays linear."""
    if getattr(count, "spans", None) is None:  # a plain count function: exact, as it comes
        return count(whole), True
    lt = left.tokens if left.tokens is not None else left.counted(count)
    rt = (right.tokens if right.tokens is not None else right.counted(count)) if right.text else 0
    m = _WORD_END_RE.search(right.text, 1)
    if m is not None:
        e = m.start()
        n = lt + count(middle + right.text[:e]) + rt - count(right.text[:e])
    else:
        n = lt + count(middle + right.text)
    if (getattr(count, "additive", False) and left.exact and right.exact and not left.text[-1].isspace()
            and middle[0] in " \n" and len(whole) == len(left.text) + len(middle) + len(right.text)):
        return n, True  # the cuts are clean and stripping changed nothing
    if abs(n - budget) <= NEAR_BUDGET_TOKENS:
        return count(whole), True
    return n, False


def _fitting(chunk: _Chunk, budget: int, count: TokenCount) -> list[_Chunk]:
    """The chunk, counted for real where an estimate decided it; split again, every candidate counted for real,
    if the estimate let it grow over the budget (rare: where the tokenizer's counts do not add up, or odd
    whitespace was joined, and the estimate was off by more than NEAR_BUDGET_TOKENS)."""
    if chunk.keep or len(chunk.text.encode("utf-8")) <= budget or chunk.counted(count) <= budget:
        return [chunk]
    plain = lambda text: count(text)  # noqa: E731 - no spans: _Meter counts each run for real
    parts = _pack(_split_units(chunk.text), "\n\n", budget, _Meter(chunk.text, plain), {"hard_splits": 0})
    return [_Chunk(chunk.path, chunk.line, chunk.level, p.text, p.tokens, True, p.hard) for p in parts]


def chunk_note(body: str, masked: str, budget: int, count: TokenCount, min_tokens: int,
               stats: dict) -> list[tuple[list[str], int, str]]:
    """(heading path, line offset, rendered text) chunks of a note too long for one example. Each heading section
    becomes a chunk; a section shorter than `min_tokens` merges into its neighbour (its heading kept as a
    Markdown line) when the two fit; a section over `budget` is split into parts at paragraphs. Work is linear
    in the note's length: each section is tokenized once (see _Meter)."""
    chunks: list[_Chunk] = []
    for path, level, line, text in heading_sections(body, masked):
        rendered = normalize_text(render_body(text))
        if not rendered:
            if path:
                chunks.append(_Chunk(path, line, level, "", 0))
            continue
        nbytes = len(rendered.encode("utf-8"))
        if nbytes <= budget:
            chunks.append(_Chunk(path, line, level, rendered))
            continue
        meter = _Meter(rendered, count)
        if meter.total <= budget:
            chunks.append(_Chunk(path, line, level, rendered, meter.total))
            continue
        for part in _pack(_split_units(rendered), "\n\n", budget, meter, stats):
            chunks.append(_Chunk(path, line, level, part.text, part.tokens, part.exact, part.hard))
    # Merge short (or empty) sections into the previous chunk, keeping their heading as a Markdown line.
    merged: list[_Chunk] = []
    for c in chunks:
        small = not c.text or (len(c.text.encode("utf-8")) <= min_tokens or c.counted(count) < min_tokens)
        if merged and small and c.path:
            prev = merged[-1]
            middle = f"\n\n{'#' * max(c.level, 2)} {c.path[-1]}" + ("\n\n" if c.text else "")
            cand = f"{prev.text}{middle}{c.text}".strip()
            if len(cand.encode("utf-8")) <= budget:
                prev.merge(cand, None, True)
                continue
            tokens, exact = _joined(prev, middle, c, cand, budget, count)
            if tokens <= budget:
                prev.merge(cand, tokens, exact)
                continue
        if c.text:
            merged.append(c)
        elif merged and c.path:  # an empty heading that does not fit anywhere: its title goes with the last chunk
            merged[-1:] = _fitting(merged[-1], budget, count)
            last = merged[-1]
            last.text, last.tokens, last.keep = f"{last.text}\n\n{'#' * max(c.level, 2)} {c.path[-1]}", None, True
    # A short first chunk (e.g. a one-line preamble) merges forward into the next one.
    if len(merged) > 1:
        first, nxt = merged[0], merged[1]
        if len(first.text.encode("utf-8")) <= min_tokens or first.counted(count) < min_tokens:
            head = f"{'#' * max(nxt.level, 2)} {nxt.path[-1]}\n\n" if nxt.path else ""
            cand = f"{first.text}\n\n{head}{nxt.text}"
            if len(cand.encode("utf-8")) <= budget:
                merged[1:2] = [_Chunk(first.path, first.line, first.level, cand)]
                merged.pop(0)
            else:
                tokens, exact = _joined(first, f"\n\n{head}", nxt, cand, budget, count)
                if tokens <= budget:
                    merged[1:2] = [_Chunk(first.path, first.line, first.level, cand, tokens, exact)]
                    merged.pop(0)
    # What an estimate decided is counted for real once (linear: the chunks partition the note).
    return [(c.path, c.line, c.text) for chunk in merged for c in _fitting(chunk, budget, count)]


# ---- notes ---------------------------------------------------------------------------------------------------
def parse_note(text: str, repairs: list[str] | None = None) -> tuple[dict, str, int]:
    """(frontmatter dict, body, frontmatter line count).

    Frontmatter that is not valid YAML as a whole is read one top-level key at a time (`repair_frontmatter`), the
    commonest break being an unquoted colon in a title; what was repaired is appended to `repairs`. Raises
    yaml.YAMLError when no key can be read that way either, or whatever the parser raises."""
    if not text.startswith("---"):
        return {}, text, 0
    try:
        meta, body = frontmatter.parse(text)  # parse(), not loads(): a key named `content` breaks Post(**meta)
    except (yaml.YAMLError, ValueError):  # ValueError: a value YAML resolves but cannot build (2026-13-45)
        block = _frontmatter_block(text)
        if block is None:
            raise
        lines, body, fm_lines = block
        meta, notes = repair_frontmatter(lines)
        if not meta:
            raise
        if repairs is not None:
            repairs.extend(notes)
        return meta, body, fm_lines
    fm_lines = text[: len(text) - len(body)].count("\n") if body else 0
    return (meta if isinstance(meta, dict) else {}), body, fm_lines


# A top-level frontmatter key: `key:` at the start of a line, then a space or the end of the line.
_FM_KEY_RE = re.compile(r"""^('[^'\n]*'|"[^"\n]*"|[^\s#'"\-:?&*!|>%@`\[\]{},][^:\n]*?):(?:[ \t]|$)""")


def _frontmatter_block(text: str) -> tuple[list[str], str, int] | None:
    """(the lines between the --- fences, the body after them, lines before the body), None without a close."""
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return None
    for j in range(1, len(lines)):
        if lines[j].rstrip() in ("---", "..."):
            return lines[1:j], "\n".join(lines[j + 1:]), j + 1
    return None


def repair_frontmatter(lines: list[str]) -> tuple[dict, list[str]]:
    """Frontmatter that is not valid YAML, read one top-level key at a time: each `key:` line with the indented or
    `- ` lines under it is parsed alone, so one bad value costs only itself. A one-line value YAML refuses (`title:
    Part 2: the plan`, a quote that does not close, `[[a]] [[b]]`) is kept as the plain text after the colon, as its
    author meant it; a list that does not close (`[a, b`) and a bad multi-line value are left out. Returns (what was read, one phrase per repair, naming line and key)."""
    entries: list[tuple[int, str, list[str]]] = []  # (file line of the key, key, lines)
    notes: list[str] = []
    for i, line in enumerate(lines, start=2):  # line 1 is the opening ---
        m = _FM_KEY_RE.match(line)
        if m:
            entries.append((i, m.group(1), [line]))
        elif entries and (not line.strip() or line[0] in " \t-#"):
            entries[-1][2].append(line)
        elif line.strip() and not line.lstrip().startswith("#"):
            notes.append(f"line {i} is not `key: value`, left out")
    meta: dict = {}
    for line_no, key, chunk in entries:
        while len(chunk) > 1 and not chunk[-1].strip():
            chunk.pop()
        name = key[1:-1] if key[:1] in "'\"" else key
        value = _yaml_or_none(chunk)
        if isinstance(value, dict):
            meta.update(value)
        elif len(chunk) == 1:
            raw = chunk[0][len(key) + 1:].strip()
            if raw.startswith("{") or (raw.startswith("[") and not raw.startswith("[[")):
                notes.append(f"line {line_no}: `{name}` left out (a list that does not close)")
                continue
            meta[name] = raw
            notes.append(f"line {line_no}: `{name}` read as plain text")
        elif isinstance(head := _yaml_or_none(chunk[:1]), dict) and next(iter(head.values()), None) is not None:
            meta.update(head)  # `tags: [a]` followed by lines that break it: keep the line that reads
            notes.append(f"{_lines(line_no + 1, line_no + len(chunk) - 1)} under `{name}` left out")
        else:
            notes.append(f"{_lines(line_no, line_no + len(chunk) - 1)}: `{name}` left out")
    return meta, notes


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first == last else f"lines {first}-{last}"


def _yaml_or_none(lines: list[str]) -> object:
    try:
        return yaml.safe_load("\n".join(lines))
    except Exception:  # noqa: BLE001 - YAMLError, or ValueError for a date like 2026-13-45: unreadable either way
        return None


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    return f" (line {mark.line + 2})" if mark is not None else ""


def read_note(rel: str, text: str, logseq: bool = False,
              repairs: list[str] | None = None) -> tuple[dict, str, int] | None:
    """(meta, body, frontmatter line count) as forge reads a note: parse_note's, with comments taken out of the body
    and, in a Logseq graph, the page's properties in meta (frontmatter, where a page has it, wins). None for an
    Excalidraw drawing. Raises what parse_note raises."""
    meta, body, fm_lines = parse_note(text, repairs)
    if "excalidraw-plugin" in meta or rel.lower().endswith(".excalidraw.md"):
        return None
    body = strip_comments(body)
    if logseq:
        page, body = logseq_page(body)
        meta = {**page, **meta}
    return meta, body, fm_lines


def note_tags(meta: dict, body: str, masked: str | None = None) -> list[str]:
    """A note's tags, lower-cased, frontmatter first, each once."""
    return list(dict.fromkeys(t.lower() for t in frontmatter_tags(meta) + inline_tags(body, masked)))


def note_to_items(rel: str, text: str, cfg: ObsidianConfig, result: Extraction,
                  count: TokenCount | None = None, tag_counts: Counter | None = None,
                  logseq: bool = False) -> list[dict]:
    repairs: list[str] = []
    try:
        note = read_note(rel, text, logseq, repairs)
    except yaml.YAMLError as e:
        result.skip(rel, f"frontmatter is not valid YAML{_yaml_problem(e)}; fix it or remove the --- block",
                    "bad-frontmatter")
        return []
    except Exception as e:  # noqa: BLE001 - whatever a parser raises inside one note skips that note only
        result.skip(rel, f"frontmatter could not be read ({describe_error(e)}); fix it or remove the --- block",
                    "bad-frontmatter")
        return []

    if note is None:
        result.skip(rel, "an Excalidraw drawing: its text is the drawing's labels and JSON, not prose", "drawing")
        return []
    meta, body, fm_lines = note
    masked = mask_code(body)
    tags = note_tags(meta, body, masked)
    if tag_counts is not None:
        tag_counts.update(tags)
    if not tag_matches(tags, cfg.include_tags):
        has = f"has {', '.join('#' + t for t in tags[:6])}" if tags else "has no tags"
        broken = f"; its frontmatter is not valid YAML: {'; '.join(repairs)}" if repairs else ""
        result.skip(rel, f"left out by the tag filter ({has}; the filter wants "
                         f"{', '.join('#' + t for t in cfg.include_tags)}){broken}", "tag-filter")
        return []

    h1 = H1_RE.search(masked) if "# " in masked else None
    title = str(meta.get("title") or (body[h1.start(1):h1.end(1)] if h1 else Path(rel).stem)).strip()
    if h1 and not meta.get("title"):
        cut = body[:h1.start()] + body[h1.end():]  # the H1 is the title: not repeated in the answer
        masked = masked[:h1.start()] + masked[h1.end():]
        body = cut
    prompt = meta.get("prompt")
    prompt = str(prompt) if prompt is not None and str(prompt).strip() else None
    tag_text = ", ".join(tags)
    base_meta = {"title": title, "prompt_source": "frontmatter" if prompt else "template"}

    def item(key_suffix: str, heading: str, line: int, user: str, answer: str, extra: dict) -> dict:
        return {"extract_key": f"obsidian:{rel}#{key_suffix}", "source_kind": "obsidian", "source_ref": rel,
                "note_path": rel, "heading": heading, "line": fm_lines + line + 1, "tags": tags,
                "messages": [{"role": "user", "content": normalize_text(user)},
                             {"role": "assistant", "content": answer}],
                "meta": {**base_meta, **extra}}

    items = []
    if cfg.split_h2_over_words is not None and len(body.split()) > cfg.split_h2_over_words:
        for heading, offset, section in (s for s in _sections(body) if s[2].strip()):
            answer = normalize_text(render_body(section))
            if not answer:
                continue
            user = (prompt or _fill(cfg.prompt_template, title=title, heading=title, tags=tag_text)) \
                if heading is None else _fill(cfg.section_prompt_template, title=title, heading=heading, tags=tag_text)
            items.append(item(heading or "", heading or title, offset, user,
                              answer, {} if heading is None else {"prompt_source": "template"}))
    else:
        answer = normalize_text(render_body(body))
        whole_prompt = prompt or _fill(cfg.prompt_template, title=title, heading=title, tags=tag_text)
        budget = None
        if answer and cfg.max_tokens is not None:
            budget = cfg.max_tokens - TEMPLATE_OVERHEAD_TOKENS - len(whole_prompt.encode("utf-8"))
        if not answer or budget is None or count is None or _fits(answer, budget, count):
            if answer:
                items.append(item("", title, 0, whole_prompt, answer, {}))
        else:
            stats = {"hard_splits": 0}
            budget = max(budget, 32)
            chunks = chunk_note(body, masked, budget, count, max(16, budget // 8), stats)
            seen: Counter = Counter()
            for path, offset, text in chunks:
                heading_text = " › ".join(path)
                seen[heading_text] += 1
            part_no: Counter = Counter()
            for path, offset, text in chunks:
                heading_text = " › ".join(path)
                part_no[heading_text] += 1
                n_parts, k = seen[heading_text], part_no[heading_text]
                if not path:
                    user = whole_prompt
                else:
                    user = _fill(cfg.section_prompt_template, title=title, heading=heading_text, tags=tag_text)
                if n_parts > 1:
                    stem, dot = (user[:-1], ".") if user.endswith(".") else (user, "")
                    user = f"{stem} (part {k} of {n_parts}){dot}"
                suffix = "/".join(path) + (f"~{k}" if n_parts > 1 else "")
                items.append(item(suffix, heading_text or title, offset, user, text,
                                  {"heading_path": path, "part": k, "parts": n_parts,
                                   "prompt_source": "template" if path or not prompt else "frontmatter"}))
            c = result.chunked if result.chunked is not None else {"notes": 0, "examples": 0, "hard_splits": 0}
            c["notes"] += 1
            c["examples"] += len(items)
            c["hard_splits"] += stats["hard_splits"]
            result.chunked = c
    if not items:
        result.skip(rel, "empty: the note has no text after its frontmatter", "empty")
    elif repairs:
        result.repaired.append((rel, "frontmatter is not valid YAML, read key by key: " + "; ".join(repairs)))
    return items


# ---- Logseq graphs ---------------------------------------------------------------------------------------------
# `key:: value` on a line of its own (or as a block: `- key:: value`) is a Logseq property: metadata, not prose.
LOGSEQ_PROP_RE = re.compile(r"^[ \t]*(?:- )?([A-Za-z][\w-]*):: ?(.*?)[ \t]*$", re.MULTILINE)
EMPTY_BLOCK_RE = re.compile(r"^[ \t]*-[ \t]*$\n?", re.MULTILINE)


def is_logseq(root: Path) -> bool:
    """A Logseq graph (pages/, journals/ and logseq/config.edn) rather than an Obsidian vault."""
    return (Path(root) / "logseq" / "config.edn").is_file()


def logseq_page(body: str) -> tuple[dict, str]:
    """(page properties, body without properties and empty blocks). The page's properties are the `key:: value`
    lines it starts with (`tags:: a, [[b]]`, `title::`, `alias::`); properties further down (`collapsed:: true`,
    `id::`, `- category:: …`) are dropped from the text too. Obsidian vaults are not read this way: there
    `key:: value` is a Dataview field people read as text."""
    meta: dict = {}
    lines = body.split("\n")
    i = 0
    while i < len(lines) and (m := LOGSEQ_PROP_RE.fullmatch(lines[i])) and not lines[i].lstrip().startswith("-"):
        meta[m.group(1).lower()] = m.group(2)
        i += 1
    if isinstance(meta.get("tags"), str):
        meta["tags"] = [t.strip().strip("[]#").strip() for t in meta["tags"].split(",") if t.strip("[]# ")]
    rest = LOGSEQ_PROP_RE.sub("\x00", "\n".join(lines[i:]))
    rest = re.sub(r"^\x00\n?", "", rest, flags=re.MULTILINE).replace("\x00", "")
    return meta, EMPTY_BLOCK_RE.sub("", rest)


# ---- the vault ---------------------------------------------------------------------------------------------
def _under(rel: str, folders: list[str]) -> bool:
    low = rel.lower()
    return any(low == f or low.startswith(f + "/") for f in (x.lower().strip("/") for x in folders) if f)


def iter_vault(root: Path, cfg: ObsidianConfig, result: Extraction, logseq: bool = False) -> list[Path]:
    """Markdown files of the vault. Settings, trash, attachments, templates, hidden folders, links leaving the vault
    and files that are not notes are skipped, each with a reason."""
    root_real = root.resolve()
    skip = {s.lower().strip("/") for s in cfg.skip_folders}
    # A Logseq graph's own folder (settings, bak/ with old copies of every page, .recycle/), unless configured anyway
    logseq_own = logseq and "logseq" not in skip
    if logseq_own:
        skip.add("logseq")
    templates = cfg.templates_folder.lower().strip("/")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        keep = []
        for d in sorted(dirnames):
            rel = (rel_dir / d).as_posix()
            low = rel.lower()
            if d.lower() in skip or low in skip or d.startswith("."):
                # Settings and hidden folders hold no notes of the person's own; their notes are counted, not listed.
                n = sum(1 for _, _, fs in os.walk(Path(dirpath) / d) for f in fs if f.lower().endswith(".md"))
                if n:
                    why = ("Logseq's own folder: settings, bak/ copies of old pages, .recycle/"
                           if logseq_own and low == "logseq" else "extract.obsidian.skip_folders / hidden")
                    result.skip(rel + "/", f"{n} note(s) in a folder forge never reads ({why})", "skipped-folder")
            elif low == templates:
                for sub, _, fs in os.walk(Path(dirpath) / d):
                    for f in sorted(fs):
                        if f.lower().endswith(".md"):
                            result.skip((Path(sub) / f).relative_to(root).as_posix(),
                                        "an Obsidian template (extract.obsidian.templates_folder)", "template")
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if not name.lower().endswith(".md"):
                if not name.startswith("."):
                    result.skip(rel, f"not a Markdown note ({Path(name).suffix or 'no extension'})", "not-a-note")
                continue
            if p.is_symlink():
                try:
                    p.resolve().relative_to(root_real)
                except (ValueError, OSError):
                    result.skip(rel, "symlink leads outside the vault; not read", "unreadable")
                    continue
            files.append(p)
    return files


def extract_vault(root: str | Path, cfg: ObsidianConfig, max_file_bytes: int,
                  progress: Progress | None = None, count: TokenCount | None = None,
                  survey_only: bool = False) -> Extraction:
    """Every note of the vault → items; every other file → a skip with its reason; and the vault's survey.
    `count` counts tokens of the base model's tokenizer (forge.data.tokens); without it notes are never split.
    `survey_only`: the survey alone (each note's tags, no examples), for survey_vault."""
    root = Path(root)
    result = Extraction()
    if not root.is_dir():
        result.skip(str(root), "not a folder; point at the vault's top folder", "unreadable")
        return result
    logseq = is_logseq(root)
    files = iter_vault(root, cfg, result, logseq)
    tag_counts: Counter = Counter()
    folder_counts: Counter = Counter()
    for i, path in enumerate(files, start=1):
        rel = path.relative_to(root).as_posix()
        result.read += 1
        folder_counts[rel.split("/", 1)[0] if "/" in rel else "(top)"] += 1
        try:
            size = path.stat().st_size
            if size > max_file_bytes:
                result.skip(rel, "too large: " + over_limit(size, max_file_bytes), "too-large")
                continue
            text, _ = decode_bytes(path.read_bytes())
        except OSError as e:
            result.skip(rel, f"unreadable: {e.strerror or e}", "unreadable")
            continue
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
        try:
            if cfg.include_folders and not _under(rel, cfg.include_folders):
                result.skip(rel, f"left out by the folder filter (only {', '.join(cfg.include_folders)})",
                            "folder-filter")
                tag_counts.update(_tags_only(rel, text, logseq))
            elif cfg.exclude_folders and _under(rel, cfg.exclude_folders):
                result.skip(rel, "left out by the folder filter (excluded folder)", "folder-filter")
                tag_counts.update(_tags_only(rel, text, logseq))
            elif survey_only:  # rendering a note's text is most of an import's work, and the survey needs none of it
                tag_counts.update(_tags_only(rel, text, logseq))
            else:
                result.items.extend(note_to_items(rel, text, cfg, result, count, tag_counts, logseq))
        except Exception as e:  # noqa: BLE001 - one note a library chokes on never stops the import
            result.skip(rel, f"could not be read ({describe_error(e)})", "parser-error")
        if progress and (i % 200 == 0 or i == len(files)):
            progress(i, len(files))
    result.survey = {"notes": len(files), "folders": folder_counts.most_common(),
                     "tags": tag_counts.most_common()}
    return result


def _tags_only(rel: str, text: str, logseq: bool) -> list[str]:
    """A note's tags as note_to_items counts them, for the survey of a note a filter leaves out."""
    try:
        note = read_note(rel, text, logseq)
    except Exception:  # noqa: BLE001 - the survey counts what it can
        return []
    return note_tags(note[0], note[1]) if note is not None else []


def survey_vault(root: str | Path, cfg: ObsidianConfig, max_file_bytes: int,
                 progress: Progress | None = None) -> dict:
    """Notes, folders and tags (with counts) of a vault, before any filter: what the import dialog offers."""
    everything = cfg.model_copy(update={"include_tags": [], "include_folders": [], "exclude_folders": [],
                                        "max_tokens": None})
    return (extract_vault(root, everything, max_file_bytes, progress, survey_only=True).survey
            or {"notes": 0, "folders": [], "tags": []})
