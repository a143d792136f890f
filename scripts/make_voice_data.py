#!/usr/bin/env python3
"""Turn the 1666 diary of Samuel Pepys into a small Obsidian-style vault: the voice demo's "own notes".

The source, data/voice/source/pepys-diary-1666.txt, is the year 1666 (January 1665-6 to December 1666: the last
of the plague, the Four Days' Fight, the Great Fire) cut verbatim from the Project Gutenberg plain text of Lord
Braybrooke's edition (see data/voice/README.md for where it came from and why it may ship). Each diary entry
becomes one note, `YYYY-MM-DD.md`, with frontmatter `title:` ("September 2, 1666") and `date:`; the body is
Pepys's own words:

- the editor's notes, which this edition puts in square brackets inside the text (short biographical notes,
  longer paragraphs, letters and documents he subjoins), are dropped;
- a stray ">>" line and a table of figures (indented columns) are dropped; quoted verse keeps its lines;
- words the edition prints in capitals for italics ("THE FIGHT.", "LE SECRET DE LA MASSE") are set in sentence
  case; "--" becomes an em dash; the hard line breaks are joined and runs of spaces become one space;
- a parenthesised day that opens an entry ("2nd (Lord's day).") starts the body ("Lord's day. ...").

Entries shorter than MIN_WORDS words after that (one-line notes such as "13th. The plague encreased this week 29
from 28.") are left out: they carry little of the voice. Where the edition prints one date twice, the second note
is `YYYY-MM-DD-2.md`, titled "..., 1666 (second entry)". Dates are Pepys's own (Julian calendar), with the year
begun on 1 January. Standard library only; deterministic. Re-run to regenerate:

    python scripts/make_voice_data.py                 # rewrites data/voice/vault/
    python scripts/make_voice_data.py --out DIR       # somewhere else (a test checks it reproduces the vault)
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "voice" / "source" / "pepys-diary-1666.txt"
OUT = ROOT / "data" / "voice" / "vault"
MIN_WORDS = 40

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
_MONTH_RE = "|".join(MONTHS)
# "MARCH 1, 1665-6." / "April 1, 1666." / the year's first entry, "1665-6. JANUARY 3."
MONTH_HEAD = re.compile(rf"^(?:(?P<m1>{_MONTH_RE}) (?P<d1>\d+), (?P<y1>\d{{4}})(?:-\d+)?\.|"
                        rf"(?P<y2>\d{{4}})(?:-\d+)?\. (?P<m2>{_MONTH_RE}) (?P<d2>\d+)\.)\s+", re.IGNORECASE)
# "5th.  " / "2nd (Lord's day).  " / "14th, " — a day of the current month.
DAY_HEAD = re.compile(r"^(?P<d>\d{1,2})(?:st|nd|rd|th)\b(?P<paren> ?\([^)\n]*\))?[.,]\s+")
EDITORIAL = re.compile(r"\[[^\]]*\]")  # the edition nests none; checked in split_entries
# An indented line that ends in a figure or a ")" (a bracket joining rows), or a rule: a table of figures.
TABLE_LINE = re.compile(r"^\s{2,}(?:.*[\d)]|-+)\s*$")
CAPS_RUN = re.compile(r"\b[A-Z][A-Z']*[A-Z]\b(?:[ -]+[A-Z][A-Z']*[A-Z]\b)*")


def split_entries(text: str) -> list[dict]:
    """The diary's entries in order: {year, month, day, paren, paras}. A paragraph that does not open with a date
    continues the entry before it."""
    if text.count("[") != text.count("]") or re.search(r"\[[^\]]*\[", text):
        raise SystemExit("unbalanced or nested [ ] in the source: the editorial-note rule needs flat brackets")
    # Notes first, on the whole text: a long one spans paragraphs (a subjoined letter, a Gazette extract, verse).
    text = EDITORIAL.sub(" ", text.replace("\r\n", "\n"))
    text = re.sub(r"^>>$", "", text, flags=re.MULTILINE)  # a stray mark in the etext, where a break belongs
    entries: list[dict] = []
    year = month = None
    for para in re.split(r"\n[ \t]*\n", text):
        if not para.strip():
            continue
        first = para.strip("\n")
        m = MONTH_HEAD.match(first)
        d = None if m else DAY_HEAD.match(first)
        if m:
            year = int(m.group("y1") or m.group("y2"))
            month = MONTHS.index((m.group("m1") or m.group("m2")).capitalize()) + 1
            # "1665-6": the year ran from Lady Day; January to March of "1665-6" is 1666 as we count it.
            if month <= 3 and re.search(r"\d{4}-\d", first[:m.end()]):
                year += 1
            entries.append({"year": year, "month": month, "day": int(m.group("d1") or m.group("d2")),
                            "paren": None, "paras": [first[m.end():]]})
        elif d and month is not None:
            entries.append({"year": year, "month": month, "day": int(d.group("d")),
                            "paren": (d.group("paren") or "").strip() or None, "paras": [first[d.end():]]})
        elif entries:
            entries[-1]["paras"].append(first)
        # text before the first dated entry (none in this source) has no entry to belong to
    return entries


def _sentence_case(m: re.Match) -> str:
    s = m.group(0)
    start = m.start()
    before = m.string[:start].rstrip()
    opens = not before or before[-1] in ".!?:\n"
    return s[0] + s[1:].lower() if opens else s.lower()


def clean_paragraph(para: str) -> str:
    """One paragraph of the edition (its notes already out) → the author's prose: tables out, lines joined,
    capitals for italics in sentence case, spaces normalised."""
    lines = [line for line in para.split("\n") if not TABLE_LINE.match(line)]
    verse = [ln for ln in lines if ln.strip()]
    keep_lines = len(verse) > 1 and all(ln.startswith("  ") for ln in verse)  # quoted verse, indented
    out = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if keep_lines or not out:
            out.append(line)
        elif out[-1].endswith("-") and not out[-1].endswith("--"):
            out[-1] += line  # the etext breaks lines at a compound's hyphen: "to-" / "day"
        else:
            out[-1] += " " + line
    text = "\n".join(out)
    text = CAPS_RUN.sub(_sentence_case, text)
    text = text.replace("--", "\u2014")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" +([,;:.)?!])", r"\1", text)  # a space left before punctuation where a note was cut out
    text = re.sub(r"\( +", "(", text)
    return text.strip()


def entry_body(entry: dict) -> str:
    paras = [clean_paragraph(p) for p in entry["paras"]]
    paras = [p for p in paras if p]
    if entry["paren"] and paras:
        # "2nd (Lord's day).  Some of our maids..." — the day's name is the entry's first words.
        paras[0] = entry["paren"].strip("() ").rstrip(";,") + ". " + paras[0]
    return "\n\n".join(paras)


def build(text: str) -> list[tuple[str, str]]:
    """(file name, note text) for every entry kept, in diary order."""
    notes: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for entry in split_entries(text):
        body = entry_body(entry)
        if len(body.split()) < MIN_WORDS:
            continue
        iso = f"{entry['year']:04d}-{entry['month']:02d}-{entry['day']:02d}"
        seen[iso] = seen.get(iso, 0) + 1
        n = seen[iso]
        title = f"{MONTHS[entry['month'] - 1]} {entry['day']}, {entry['year']}" + (" (second entry)" if n == 2 else
                                                                                 f" (entry {n})" if n > 2 else "")
        name = iso + (f"-{n}" if n > 1 else "")
        notes.append((f"{name}.md", f'---\ntitle: "{title}"\ndate: "{iso}"\n---\n\n{body}\n'))
    return notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=SOURCE)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    notes = build(args.source.read_text(encoding="utf-8"))
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.md"):  # a re-run leaves no note of an older rule behind
        old.unlink()
    for name, note in notes:
        (args.out / name).write_text(note, encoding="utf-8", newline="\n")
    words = sum(len(n.split("\n---\n", 1)[1].split()) for _, n in notes)
    print(f"{len(notes)} notes, {words} words -> {args.out}")


if __name__ == "__main__":
    main()
