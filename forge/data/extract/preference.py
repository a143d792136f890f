"""Preference rows → examples: a DPO pair is stored as the prompt turns plus the *chosen* answer, with the rejected
answer in meta["rejected"]; a KTO row as the prompt plus its completion, with meta["label"] true (desirable) or
false (undesirable). Read in the shapes TRL documents and public sets use:

- `{"prompt": str, "chosen": str, "rejected": str}` (TRL standard);
- `{"prompt": [turns] or str, "chosen": [turns], "rejected": [turns]}` (TRL conversational; UltraFeedback-binarized
  style, where chosen and rejected are whole conversations starting with the prompt: the shared turns are the
  prompt, the last assistant turn of each the answer);
- `{"chosen": str, "rejected": str}` with no prompt, both whole Human:/Assistant: transcripts (Anthropic HH-RLHF):
  the shared turns are the prompt, each final Assistant turn the answer;
- `{"prompt": str or [turns], "completion": str or [turns], "label": bool}` (TRL unpaired / KTO; a label read from
  CSV or Parquet as "true"/"false"/1/0 counts too).

A row with `chosen` or `rejected`, or with `completion` and `label`, is read here before any SFT shape is tried
(`prompt`/`completion` is an SFT shape too; UltraFeedback-binarized also carries a `messages` column), so a bad
preference row is skipped with its reason rather than imported as a plain example.
"""

from __future__ import annotations

import re

from forge.data.extract.common import Found, _kind_of, _merge_turns, coerce_messages, empty_turn, examples_of
from forge.data.validate import normalize_messages, normalize_text
from forge.store import content_hash

PAIR_KEYS = ("chosen", "rejected")
KTO_KEYS = ("completion", "label")
PREFERENCE_KEYS = ("prompt", "chosen", "rejected", "completion", "label", "system")

# A turn marker of an HH-RLHF transcript: "Human:" or "Assistant:" at the start of the text or of a line, however
# many blank lines or spaces come around it (the set has "\n\nHuman: …", "\nHuman:…" and " \n\nAssistant:  …").
TURN_RE = re.compile(r"(?:\A|\n)[ \t]*(Human|Assistant)[ \t]*:")
LABEL_WORDS = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}


def is_preference(rec: object) -> bool:
    """A record to read as a preference: one with `chosen` or `rejected`, or with both `completion` and `label`."""
    return isinstance(rec, dict) and (any(k in rec for k in PAIR_KEYS) or all(k in rec for k in KTO_KEYS))


def preference_columns(columns: list[str]) -> dict[str, str] | None:
    """The columns (key → column name, matched case-insensitively) of a preference table, or None for another
    shape: `chosen` and `rejected`, or `completion` and `label`."""
    lower = {c.lower(): c for c in columns}
    if not (all(k in lower for k in PAIR_KEYS) or all(k in lower for k in KTO_KEYS)):
        return None
    keys = PREFERENCE_KEYS if any(k in lower for k in PAIR_KEYS) else ("prompt", *KTO_KEYS, "system")
    return {k: lower[k] for k in keys if k in lower}


def describe_columns(cols: dict[str, str]) -> str:
    """How `forge extract dataset` names the shape it read."""
    if "chosen" in cols:
        named = [cols[k] for k in ("prompt", "chosen", "rejected") if k in cols]
        return "preference pairs (" + " + ".join(named) + ")"
    return "KTO labels (" + " + ".join(cols[k] for k in ("prompt", "completion", "label") if k in cols) + ")"


def example_key(messages: list[dict], meta: dict | None = None) -> str:
    """The content part of an item's extract_key: the messages' hash, with a pair's rejected answer or a KTO label
    in what is hashed, so a pair and a plain example with the same turns are two items, and a re-import of the same
    row is the same item (a changed rejected answer or label is a new one)."""
    meta = meta or {}
    extra = []
    if isinstance(meta.get("rejected"), str):
        extra.append({"role": "rejected", "content": meta["rejected"]})
    if isinstance(meta.get("label"), bool):
        extra.append({"role": "label", "content": "true" if meta["label"] else "false"})
    return content_hash(messages + extra)


def coerce_label(value: object) -> bool | None:
    """True/False for a KTO label (a bool, 1/0, or "true"/"false"/"1"/"0" as CSV and Parquet write them), else
    None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return LABEL_WORDS.get(value.strip().lower())
    return None


def is_transcript(text: object) -> bool:
    """Whether a text is an HH-RLHF style transcript: it starts with a "Human:" turn."""
    return isinstance(text, str) and re.match(r"\s*Human[ \t]*:", text) is not None


def transcript_turns(text: str) -> list[dict] | None:
    """The turns of a Human:/Assistant: transcript (blank turns dropped, a trailing empty "Assistant:" too), or None
    when the text is not one (no Human: turn first, or no marker at all)."""
    marks = list(TURN_RE.finditer(text))
    if not marks or text[:marks[0].start()].strip() or marks[0].group(1) != "Human":
        return None
    turns = []
    for m, nxt in zip(marks, marks[1:] + [None]):
        body = text[m.end():nxt.start() if nxt else len(text)].strip()
        turns.append(("user" if m.group(1) == "Human" else "assistant", body))
    return normalize_messages(_merge_turns(turns))


def _turns(value: object, key: str, as_role: str) -> tuple[list[dict] | None, str]:
    """(turns, "") for a prompt or an answer given as text or as a list of {role, content} turns, or (None, why)."""
    if isinstance(value, str):
        if as_role == "user" and is_transcript(value):
            turns = transcript_turns(value)
            if turns:
                return turns, ""
        return normalize_messages([{"role": as_role, "content": value}]), ""
    if isinstance(value, (list, tuple)):
        turns = coerce_messages(list(value))
        if turns is None:
            return None, f"'{key}' is not a list of {{role, content}} turns with known roles"
        return turns, ""
    return None, f"'{key}' is {_kind_of(value)}, not text or a list of turns"


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value) or (
        isinstance(value, (str, list, tuple)) and not (value.strip() if isinstance(value, str) else value))


def _with_system(msgs: list[dict], rec: dict) -> list[dict]:
    system = rec.get("system")
    if isinstance(system, str) and system.strip() and not (msgs and msgs[0]["role"] == "system"):
        return normalize_messages([{"role": "system", "content": system}]) + msgs
    return msgs


def _skip(label: str, code: str, reason: str) -> Found:
    return Found(label, None, code, reason)


def _done(label: str, msgs: list[dict], meta: dict, rec: dict) -> Found:
    msgs = _with_system(msgs, rec)
    if not any(m["role"] == "user" for m in msgs[:-1]):
        return _skip(label, "bad-record", "no prompt: give 'prompt', or whole conversations in 'chosen' and "
                                          "'rejected'")
    empty = empty_turn(msgs)
    if empty:
        return _skip(label, "empty", empty.replace("the user turn", "the prompt"))
    return Found(label, msgs, meta=meta)


def _split_shared(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], str, str] | str:
    """(shared turns, chosen answer, rejected answer) of two conversations that differ only in their last
    assistant turn, or why not."""
    k = 0
    while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
        k += 1
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        if conv[-1]["role"] != "assistant":
            return f"'{name}' does not end with an assistant answer (its last one is empty or missing)"
    if len(chosen) - k != 1 or len(rejected) - k != 1:
        return (f"'chosen' and 'rejected' differ before their last answer (at turn {k + 1}); forge keeps one answer "
                f"per side")
    return chosen[:k], chosen[-1]["content"], rejected[-1]["content"]


def _pair(rec: dict, label: str) -> Found:
    for key in PAIR_KEYS:
        if key not in rec:
            other = PAIR_KEYS[1 - PAIR_KEYS.index(key)]
            return _skip(label, "bad-record", f"has '{other}' but no '{key}'")
    for key in PAIR_KEYS:
        if _blank(rec[key]):
            return _skip(label, "empty", f"'{key}' is empty")
    chosen, rejected, prompt = rec["chosen"], rec["rejected"], rec.get("prompt")
    if isinstance(chosen, str) != isinstance(rejected, str):
        kinds = f"'chosen' is {_kind_of(chosen)} and 'rejected' {_kind_of(rejected)}"
        return _skip(label, "bad-record", f"{kinds}: both must be text or both lists of turns")
    if isinstance(chosen, str) and (_blank(prompt) or is_transcript(chosen)):
        # No prompt (HH-RLHF), or a prompt beside whole transcripts: the transcripts' shared turns are the prompt.
        if not is_transcript(chosen) and not is_transcript(rejected):
            return _skip(label, "bad-record", "no 'prompt', and 'chosen' and 'rejected' are not Human:/Assistant: "
                                              "transcripts to take it from")
        if not (is_transcript(chosen) and is_transcript(rejected)):
            one, other = ("chosen", "rejected") if is_transcript(chosen) else ("rejected", "chosen")
            return _skip(label, "bad-record", f"'{one}' is a Human:/Assistant: transcript but '{other}' is not")
        c, r = transcript_turns(chosen), transcript_turns(rejected)
        if not c or not r:
            return _skip(label, "bad-record", f"'{'chosen' if not c else 'rejected'}' is not a readable "
                                              f"Human:/Assistant: transcript")
        return _shared(c, r, None, label, rec)
    if isinstance(chosen, str):
        p, why = _turns(prompt, "prompt", "user")
        if p is None:
            return _skip(label, "bad-record", why)
        answer, other = normalize_text(chosen), normalize_text(rejected)
        if answer == other:
            return _skip(label, "bad-record", "'chosen' and 'rejected' are the same answer")
        return _done(label, p + [{"role": "assistant", "content": answer}], {"rejected": other}, rec)
    c, why = _turns(chosen, "chosen", "assistant")
    if c is None:
        return _skip(label, "bad-record", why)
    r, why = _turns(rejected, "rejected", "assistant")
    if r is None:
        return _skip(label, "bad-record", why)
    p = None
    if not _blank(prompt):
        p, why = _turns(prompt, "prompt", "user")
        if p is None:
            return _skip(label, "bad-record", why)
    return _shared(c, r, p, label, rec)


def _shared(c: list[dict], r: list[dict], prompt: list[dict] | None, label: str, rec: dict) -> Found:
    if c == r:
        return _skip(label, "bad-record", "'chosen' and 'rejected' are the same answer")
    split = _split_shared(c, r)
    if isinstance(split, str):
        return _skip(label, "bad-record", split)
    shared, answer, other = split
    if not answer.strip() or not other.strip():
        return _skip(label, "empty", f"the {'chosen' if not answer.strip() else 'rejected'} answer is empty")
    if answer == other:
        return _skip(label, "bad-record", "'chosen' and 'rejected' are the same answer")
    if not any(m["role"] == "user" for m in shared):
        # Answers only (TRL's explicit-prompt form): the prompt is the `prompt` field. When the conversations hold
        # their own prompt (UltraFeedback), the field repeats it and is not added again.
        if prompt is None:
            return _skip(label, "bad-record", "no 'prompt', and 'chosen' holds only the answer")
        shared = prompt + shared
    return _done(label, shared + [{"role": "assistant", "content": answer}], {"rejected": other}, rec)


def _kto(rec: dict, label: str) -> Found:
    raw = rec["label"]
    if _blank(raw):
        return _skip(label, "empty", "'label' is empty: give true (desirable) or false (undesirable)")
    verdict = coerce_label(raw)
    if verdict is None:
        shown = repr(raw) if isinstance(raw, str) else str(raw)
        return _skip(label, "bad-record", f"'label' is {shown[:40]}, not true or false")
    if _blank(rec["completion"]):
        return _skip(label, "empty", "'completion' is empty")
    c, why = _turns(rec["completion"], "completion", "assistant")
    if c is None:
        return _skip(label, "bad-record", why)
    if c[-1]["role"] != "assistant":
        return _skip(label, "bad-record", "'completion' does not end with an assistant answer")
    prompt = rec.get("prompt")
    if _blank(prompt):
        if any(m["role"] == "user" for m in c):  # a whole conversation: its own prompt
            return _done(label, c, {"label": verdict}, rec)
        return _skip(label, "bad-record", "no 'prompt' for the completion")
    p, why = _turns(prompt, "prompt", "user")
    if p is None:
        return _skip(label, "bad-record", why)
    return _done(label, p + c, {"label": verdict}, rec)


def preference_found(rec: dict, label: str = "") -> Found:
    """The example in one preference record (see the module's docstring), or why there is none. `Found.meta`
    holds {"rejected": str} for a pair, {"label": bool} for a KTO row."""
    if any(k in rec for k in PAIR_KEYS):
        return _pair(rec, label)
    return _kto(rec, label)


def records_examples(rec: object) -> list[Found]:
    """Every example in one record of a JSON/JSONL file: a preference record's pair or KTO row (read before any SFT
    shape), else what common.examples_of finds."""
    return [preference_found(rec)] if is_preference(rec) else examples_of(rec)
