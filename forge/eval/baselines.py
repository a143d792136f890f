"""The extractive baseline beside the two models: lead-N, the first N sentences (or lines of a dialogue) of the last
user turn, for summary-like tasks."""

from __future__ import annotations

import re
import statistics

from forge.eval.metrics import _json_rows, split_sentences, words


# A line that opens with a speaker tag ("Amanda: …", "[00:01] Dr. Lee: …"): the text is a dialogue or transcript.
_SPEAKER_RE = re.compile(r"^(?:\[?\d{1,2}:\d{2}(?::\d{2})?\]?\s*)?[^\s:][^:]{0,40}:\s*\S")


def lead_units(text: str) -> tuple[list[str], str]:
    """The units lead-N counts in a last user turn, and their kind: its lines when it is line-structured (at least
    two lines, half or more opening with a speaker tag; what precedes the first tagged line is an instruction),
    else its sentences (a first line ending in ':' is an instruction; lines within a paragraph are joined, so
    hard-wrapped prose still splits at sentences)."""
    lines = [ln.strip() for ln in (text or "").splitlines()]
    kept = [ln for ln in lines if ln]
    tagged = [i for i, ln in enumerate(kept) if _SPEAKER_RE.match(ln)]
    if len(tagged) >= 2 and 2 * len(tagged) >= len(kept):
        return kept[tagged[0]:], "lines"
    if len(kept) > 1 and kept[0].endswith(":"):
        lines = lines[lines.index(kept[0]) + 1:]
    paragraphs = " ".join(ln if ln else "\n" for ln in lines).split("\n")
    return [s for para in paragraphs for s in split_sentences(para)], "sentences"


def choose_lead_n(sources: list[str], refs: list[str]) -> int:
    """N for the whole held-out set: the mean reference length in words over the mean unit length in words,
    rounded, at least 1. Only the references' lengths are read, never their text."""
    unit_words = [words(u) for s in sources for u in lead_units(s)[0]]
    mean_unit = sum(unit_words) / len(unit_words) if unit_words else 0
    if not refs or not mean_unit:
        return 1
    return max(1, round(sum(words(r) for r in refs) / len(refs) / mean_unit))


def lead(text: str, n: int) -> str:
    units, kind = lead_units(text)
    return ("\n" if kind == "lines" else " ").join(units[:n])


def is_summary_like(sources: list[str], refs: list[str]) -> bool:
    """References that are prose (not JSON objects, median at least 8 words: longer than labels and extracted
    fields) and shorter than the prompts' last user turns on average."""
    if not refs or _json_rows(refs, refs) is not None:
        return False
    ref_words = [words(r) for r in refs]
    return statistics.median(ref_words) >= 8 and sum(ref_words) / len(refs) < sum(map(words, sources)) / len(sources)


def lead_records(records: list[dict], n: int | None = None) -> tuple[str, list[dict]]:
    """The lead-N baseline's records for a model's records (their prompts are the last user turns)."""
    prompts, refs = [r["prompt"] for r in records], [r["expected"] for r in records]
    n = n or choose_lead_n(prompts, refs)
    return f"lead-{n}", [{"prompt": p, "expected": e, "output": lead(p, n), "error": None, "latency_ms": None,
                          "completion_tokens": 0} for p, e in zip(prompts, refs)]
