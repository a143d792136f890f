"""Obsidian vault → conversations.

A note carrying one of the include tags becomes a conversation: the user turn from frontmatter `prompt:` or a
template over the title, the assistant turn the body with frontmatter removed, wikilinks rendered as text,
embeds dropped and code kept. Long notes can be split by H2, one example per section.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import frontmatter
import yaml

from forge.config import ObsidianConfig
from forge.extract.common import Extraction, Progress, decode_bytes
from forge.validate import normalize_text

CODE_RE = re.compile(r"(^|\n)(```|~~~)[^\n]*\n.*?(\n\2[^\n]*(?=\n|$)|$)|`[^`\n]+`", re.DOTALL)
TAG_RE = re.compile(r"(?<![^\s(,])#([\w/-]+)")
EMBED_RE = re.compile(r"!\[\[[^\]\n]*\]\]")
LINK_RE = re.compile(r"\[\[([^\]|\n]*?)(?:\|([^\]\n]*))?\]\]")
_NUMERIC_TAG = re.compile(r"[\d/-]+")
H1_RE = re.compile(r"^# +(.+?)\s*#*\s*$", re.MULTILINE)
H2_RE = re.compile(r"^## +(.+?)\s*#*\s*$", re.MULTILINE)


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
    return [str(t).strip().lstrip("#") for t in raw if t is not None and str(t).strip().lstrip("#")]


def _render_link(m: re.Match) -> str:
    target, alias = m.group(1), m.group(2)
    if alias is not None and alias.strip():
        return alias.strip()
    page, _, sub = target.partition("#")
    page = page.strip().split("/")[-1]
    if page.endswith(".md"):
        page = page[:-3]
    return page or sub.lstrip("^").strip()


TAG_LINE_RE = re.compile(r"^[ \t]*#[\w/-]+(?:[ \t]+#[\w/-]+)*[ \t]*$", re.MULTILINE)
TRAILING_TAGS_RE = re.compile(r"(?<=\S)(?:[ \t]+#[\w/-]+)+[ \t]*$", re.MULTILINE)


def _render_prose(seg: str) -> str:
    if "[[" in seg:
        seg = LINK_RE.sub(_render_link, EMBED_RE.sub("", seg))
    if "#" in seg:
        # Tags are metadata, not something the person would say: drop tag-only lines and tags ending a line.
        seg = TRAILING_TAGS_RE.sub("", TAG_LINE_RE.sub("", seg))
    return seg


def render_body(body: str) -> str:
    """Wikilinks as their alias or note name, embeds and tag-only lines dropped; code untouched."""
    return _outside_code(body, _render_prose)


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
    """(heading, line offset within body, text) per H2 section; text before the first H2 has heading None."""
    masked = mask_code(body)  # H2 lines inside code blocks must not split
    marks = [(m.start(), m.group(1)) for m in H2_RE.finditer(masked)]
    out = []
    if not marks or marks[0][0] > 0:
        end = marks[0][0] if marks else len(body)
        out.append((None, 0, body[:end]))
    for i, (start, heading) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(body)
        text = body[start:end].split("\n", 1)
        out.append((heading.strip(), body.count("\n", 0, start), text[1] if len(text) > 1 else ""))
    return out


def note_to_items(rel: str, text: str, cfg: ObsidianConfig, result: Extraction) -> list[dict]:
    try:
        post = frontmatter.loads(text) if text.startswith("---") else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        result.skip(rel, f"frontmatter is not valid YAML{where}; fix it or remove the --- block")
        return []
    meta = dict(post.metadata) if post is not None else {}
    body = post.content if post is not None else text
    fm_lines = text[: len(text) - len(body)].count("\n") if post is not None and body else 0
    if post is not None and not isinstance(post.metadata, dict):
        meta = {}

    masked = mask_code(body)
    tags = list(dict.fromkeys(t.lower() for t in frontmatter_tags(meta) + inline_tags(body, masked)))
    if not tag_matches(tags, cfg.include_tags):
        return []

    h1 = H1_RE.search(masked) if "# " in masked else None
    title = str(meta.get("title") or (body[h1.start(1):h1.end(1)] if h1 else Path(rel).stem)).strip()
    if h1 and not meta.get("title"):
        body = body[:h1.start()] + body[h1.end():]  # the H1 is the title: not repeated in the answer
    prompt = meta.get("prompt")
    tag_text = ", ".join(tags)

    sections = [(None, 0, body)]
    if cfg.split_h2_over_words is not None and len(body.split()) > cfg.split_h2_over_words:
        sections = [s for s in _sections(body) if s[2].strip()]
    items = []
    for heading, offset, section in sections:
        answer = normalize_text(render_body(section))
        if not answer:
            continue
        if heading is None:
            user = str(prompt) if prompt else _fill(cfg.prompt_template, title=title, heading=title, tags=tag_text)
        else:
            user = _fill(cfg.section_prompt_template, title=title, heading=heading, tags=tag_text)
        items.append({
            "extract_key": f"obsidian:{rel}#{heading or ''}",
            "source_kind": "obsidian",
            "source_ref": rel,
            "note_path": rel,
            "heading": heading or title,
            "line": fm_lines + offset + 1,
            "tags": tags,
            "messages": [{"role": "user", "content": normalize_text(user)},
                         {"role": "assistant", "content": answer}],
            "meta": {"title": title},
        })
    if not items:
        result.skip(rel, "the note has no text after its frontmatter")
    return items


def iter_vault(root: Path, cfg: ObsidianConfig, result: Extraction) -> list[Path]:
    """Markdown files of the vault, skipping settings, templates, attachments and links leaving the vault."""
    root_real = root.resolve()
    skip = {s.lower() for s in cfg.skip_folders} | {cfg.templates_folder.lower().strip("/")}
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames
                             if d.lower() not in skip and str(rel_dir / d).lower() not in skip
                             and not d.startswith("."))
        for name in sorted(filenames):
            if not name.lower().endswith(".md"):
                continue
            p = Path(dirpath) / name
            if p.is_symlink():
                try:
                    p.resolve().relative_to(root_real)
                except (ValueError, OSError):
                    result.skip(str(p.relative_to(root)), "symlink leads outside the vault; not read")
                    continue
            files.append(p)
    return files


def extract_vault(root: str | Path, cfg: ObsidianConfig, max_file_bytes: int,
                  progress: Progress | None = None) -> Extraction:
    root = Path(root)
    result = Extraction()
    if not root.is_dir():
        result.skip(str(root), "not a folder; point at the vault's top folder")
        return result
    files = iter_vault(root, cfg, result)
    for i, path in enumerate(files, start=1):
        rel = path.relative_to(root).as_posix()
        try:
            size = path.stat().st_size
            if size > max_file_bytes:
                result.skip(rel, f"{size} bytes is over the {max_file_bytes}-byte limit (extract.max_file_bytes)")
                continue
            text, _ = decode_bytes(path.read_bytes())
        except OSError as e:
            result.skip(rel, f"cannot read: {e.strerror or e}")
            continue
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        result.items.extend(note_to_items(rel, text, cfg, result))
        if progress and (i % 200 == 0 or i == len(files)):
            progress(i, len(files))
    return result
