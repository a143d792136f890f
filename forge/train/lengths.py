"""Sequence lengths from the data: how long the training conversations are in the base model's tokens, which
max_seq_len covers them, and what the truncation policy does to the ones that do not fit.

A conversation's length is its full chat-templated text in the base tokenizer's tokens, exactly what the runner
trains on. Two tokenizers give the same numbers: `folder_chat` (the `tokenizers` library and the template rendered
with jinja2, as transformers does — no torch import, so `forge train` and the Train mode can measure before a
run starts) and `hf_chat` (a transformers tokenizer, used by the runner). The truncation policy never cuts an
assistant token: it removes tokens from the middle of the longest user turn, leaving a visible marker, or drops
the example; both are counted.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MARKER = " […] "
"""Stands where tokens were cut out of a user turn."""
ROUND_TO = 32
PERCENTILE = 98
CONFIRM_SHARE = 0.02
"""An explicit max_seq_len that truncates more than this share of the examples needs a confirmation."""
MIN_KEEP = 16
"""Tokens of a user turn kept at least (half before the marker, half after) before the next turn is cut."""
BUNDLED_CONTEXT = 8192
"""llama.context_length of the bundled SmolLM2-135M GGUF."""


class LengthError(ValueError):
    """The lengths cannot be measured; the message says why."""


@dataclass
class ChatTokenizer:
    render: Callable[[list[dict], bool], str]
    """(messages, add_generation_prompt) → the chat-templated text."""
    encode: Callable[[str], tuple[list[int], list[tuple[int, int]]]]
    """text → (token ids, character offsets), no special tokens added."""


def hf_chat(tokenizer) -> ChatTokenizer:
    """A transformers tokenizer (the runner's)."""
    if isinstance(tokenizer, ChatTokenizer):
        return tokenizer

    def render(messages, generation_prompt=False):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def encode(text):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]

    return ChatTokenizer(render, encode)


def _token_text(value) -> str:
    if isinstance(value, dict):
        return value.get("content") or ""
    return value or ""


def folder_chat(folder: str | Path) -> ChatTokenizer:
    """tokenizer.json and the chat template of an HF model or tokenizer folder, without transformers."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer

    folder = Path(folder)
    if not (folder / "tokenizer.json").exists():
        raise LengthError(f"{folder}: no tokenizer.json")
    config = {}
    if (folder / "tokenizer_config.json").exists():
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = config.get("chat_template")
    if (folder / "chat_template.jinja").exists():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if not template:
        raise LengthError(f"{folder}: the tokenizer has no chat template")
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def raise_exception(message):
        raise TemplateError(message)

    def strftime_now(fmt):
        from datetime import datetime

        return datetime.now().strftime(fmt)

    # The environment transformers renders chat templates in (utils/chat_template_utils.py).
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
    compiled = env.from_string(template)
    specials = {k: _token_text(config.get(k)) for k in ("bos_token", "eos_token", "pad_token", "unk_token")}

    def render(messages, generation_prompt=False):
        return compiled.render(messages=messages, add_generation_prompt=generation_prompt, **specials)

    def encode(text):
        enc = tok.encode(text, add_special_tokens=False)
        return enc.ids, enc.offsets

    return ChatTokenizer(render, encode)


def chat_for_base(base_model: str, workspace: str | Path) -> ChatTokenizer:
    """The tokenizer of the base model a spec names: the bundled default (its tokenizer copy in the workspace,
    forge/data/tokens.py), a local HF folder, or a hub id (through transformers)."""
    from forge.models.base_model import DEFAULT_BASE

    if base_model == DEFAULT_BASE:
        from forge.data.tokens import TokenizerUnavailable, tokenizer_file

        try:
            return folder_chat(tokenizer_file(workspace).parent)
        except TokenizerUnavailable as e:
            raise LengthError(str(e)) from None
    from forge.models.base_model import get_base, resolve_base

    registered = get_base(base_model, Path(workspace))
    if registered is not None:  # materialised once per workspace (the run needs it next anyway)

        base_model = str(resolve_base(base_model, Path(workspace)))
    path = Path(base_model).expanduser()
    if path.is_dir():
        try:
            return folder_chat(path)
        except Exception:  # noqa: BLE001 - a template this renderer cannot read: let transformers try
            pass
    try:
        from transformers import AutoTokenizer

        return hf_chat(AutoTokenizer.from_pretrained(str(path) if path.is_dir() else base_model))
    except Exception as e:  # noqa: BLE001
        raise LengthError(f"base model {base_model!r}: its tokenizer could not be loaded ({e})") from None


def model_context(base_model: str, workspace: str | Path | None = None) -> int | None:
    """The model's context length in tokens, where it can be read without loading the model."""
    from forge.models.base_model import DEFAULT_BASE

    if base_model == DEFAULT_BASE:
        return BUNDLED_CONTEXT
    from forge.models.base_model import GEMMA3, get_base

    if base_model == GEMMA3.id:
        return GEMMA3.context
    registered = get_base(base_model, Path(workspace)) if workspace is not None else None
    if registered is not None and registered.context:
        return int(registered.context)
    config = Path(base_model).expanduser() / "config.json"
    try:
        data = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(data.get(key), int) and data[key] > 0:
            return data[key]
    return None


# ---- tokenization with assistant-only labels -----------------------------------------------------------------
def assistant_spans(chat: ChatTokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant turn (content and end-of-turn)."""
    full = chat.render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = chat.render(messages[:i], True)
        upto = chat.render(messages[:i + 1], False)
        if full.startswith(upto) and upto.startswith(prompt):
            spans.append((len(prompt), len(upto)))
        else:  # a template without the prefix property: fall back to the content itself
            start = full.find(m["content"])
            if start >= 0:
                spans.append((start, start + len(m["content"])))
    return full, spans


def encode_conversation(chat: ChatTokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """input_ids, and labels equal to them on assistant tokens and -100 elsewhere."""
    text, spans = assistant_spans(chat, messages)
    ids, offsets = chat.encode(text)
    labels = [tok if any(a <= s < b for a, b in spans) else -100 for tok, (s, _) in zip(ids, offsets)]
    return ids, labels


@dataclass
class Fitted:
    outcome: str
    """fits | cut | dropped"""
    length: int
    """Tokens before any cut."""
    input_ids: list[int] | None = None
    labels: list[int] | None = None
    messages: list[dict] | None = None
    """The conversation as trained on (with the marker where it was cut)."""


def _cut(text: str, offsets: list[tuple[int, int]], remove: int) -> str:
    n = len(offsets)
    head = (n - remove) // 2
    tail_start = head + remove
    return text[:offsets[head - 1][1] if head else 0].rstrip() + MARKER + text[offsets[tail_start][0]:].lstrip()


def fit(chat: ChatTokenizer, messages: list[dict], max_len: int, policy: str = "middle-of-user",
        encoded: tuple[list[int], list[int]] | None = None) -> Fitted:
    """The conversation within max_len tokens by the policy; the assistant turns are never cut."""
    ids, labels = encoded or encode_conversation(chat, messages)
    length = len(ids)
    if length <= max_len:
        return Fitted("fits", length, ids, labels, messages)
    if policy == "drop":
        return Fitted("dropped", length)
    users = {i: chat.encode(m["content"]) for i, m in enumerate(messages) if m["role"] == "user"}
    removed = dict.fromkeys(users, 0)
    marker_tokens = len(chat.encode(MARKER)[0])
    msgs = [dict(m) for m in messages]
    for _ in range(12):
        excess = len(ids) - max_len
        if excess <= 0:
            if any(lab != -100 for lab in labels):
                return Fitted("cut", length, ids, labels, msgs)
            return Fitted("dropped", length)
        # the longest user turn left (tokens still in it), first in the conversation on a tie
        left = {i: len(users[i][0]) - removed[i] for i in users}
        i = max(left, key=lambda k: (left[k], -k), default=None)
        if i is None or left[i] <= MIN_KEEP:
            return Fitted("dropped", length)
        extra = 0 if removed[i] else marker_tokens
        removed[i] += min(excess + extra + 1, left[i] - MIN_KEEP)
        msgs[i]["content"] = _cut(messages[i]["content"], users[i][1], removed[i])
        ids, labels = encode_conversation(chat, msgs)
    return Fitted("dropped", length)


def tokenize(tokenizer, conversations: list[list[dict]], max_len: int,
             policy: str = "middle-of-user") -> tuple[list[dict], dict]:
    """Training rows (input_ids, labels on assistant tokens only) within max_len by the policy, and the counts:
    over (longer than max_len), cut, dropped (by the policy, or with no assistant token left)."""
    chat = hf_chat(tokenizer)
    rows, counts = [], Counter()
    for msgs in conversations:
        f = fit(chat, msgs, max_len, policy)
        counts["over"] += f.outcome != "fits"
        counts[f.outcome] += 1
        if f.input_ids is not None and any(lab != -100 for lab in f.labels):
            rows.append({"input_ids": f.input_ids, "labels": f.labels})
        elif f.outcome == "fits":
            counts["masked"] += 1
    return rows, {"over": counts["over"], "cut": counts["cut"], "dropped": counts["dropped"],
                  "masked": counts["masked"]}


# ---- choosing the length and reporting it -----------------------------------------------------------------
def percentile(lengths: list[int], q: float) -> int:
    """Nearest rank: the smallest length that at least q % of the examples do not exceed."""
    if not lengths:
        return 0
    ordered = sorted(lengths)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def choose_length(lengths: list[int], context: int | None, max_tokens_per_batch: int,
                  batch_size: int, grad_accum: int = 1) -> tuple[int, str, int, int]:
    """(max_seq_len, why, batch_size, grad_accum): the p98 length rounded up to a multiple of 32, within the model's
    context. When batch_size rows of that length exceed the memory budget, fewer rows go in each step and the
    gradient is accumulated over more steps, so the effective batch stays the same and no summary is cut; only a
    length over the whole budget is capped by it."""
    p = percentile(lengths, PERCENTILE)
    chosen = max(ROUND_TO, math.ceil(p / ROUND_TO) * ROUND_TO)
    why = (f"auto: {PERCENTILE} % of the {len(lengths)} training examples fit in {p} tokens, "
           f"rounded up to a multiple of {ROUND_TO}")
    if context and chosen > context:
        chosen, why = context, why + f", capped at the model's context of {context}"
    budget = max(ROUND_TO, max_tokens_per_batch // ROUND_TO * ROUND_TO)
    if chosen > budget:
        chosen, why = budget, why + f", capped at {budget} by the memory budget (max_tokens_per_batch)"
    if batch_size * chosen > max_tokens_per_batch:
        effective = batch_size * grad_accum
        rows = max(1, min(batch_size, max_tokens_per_batch // chosen))
        while effective % rows:  # keep the effective batch exactly
            rows -= 1
        why += (f"; batch_size {batch_size} → {rows} × grad_accum {effective // rows} (the same effective batch "
                f"of {effective}) to stay within max_tokens_per_batch {max_tokens_per_batch}")
        batch_size, grad_accum = rows, effective // rows
    return chosen, why, batch_size, grad_accum


def histogram(lengths: list[int], buckets: int = 8) -> list[dict]:
    """Equal-width buckets [from, to), a multiple of 32 wide, from 0 to the longest example."""
    if not lengths:
        return []
    width = max(ROUND_TO, math.ceil((max(lengths) + 1) / buckets / ROUND_TO) * ROUND_TO)
    top = min(buckets, max(lengths) // width + 1)
    counts = Counter(min(n // width, top - 1) for n in lengths)
    return [{"from": b * width, "to": (b + 1) * width, "count": counts.get(b, 0)} for b in range(top)]


def plan(spec, conversations: list[list[dict]], chat: ChatTokenizer, context: int | None) -> dict:
    """The length report of a spec on these conversations: the length used and why, p50/p98/max, a histogram,
    and how many examples are longer and what the truncation policy does to them."""
    encoded = [encode_conversation(chat, m) for m in conversations]
    lengths = [len(ids) for ids, _ in encoded]
    explicit = spec.max_seq_len != "auto"
    batch, accum = spec.batch_size, spec.grad_accum
    if explicit:
        max_len, why = spec.max_seq_len, "set in the spec"
        if context and max_len > context:
            why += f" (longer than the model's context of {context})"
    elif lengths:
        max_len, why, batch, accum = choose_length(lengths, context, spec.max_tokens_per_batch, spec.batch_size,
                                                   spec.grad_accum)
    else:
        max_len, why = 256, "auto: no training examples to measure"
    outcomes = Counter()
    for msgs, enc in zip(conversations, encoded):
        if len(enc[0]) > max_len:
            outcomes[fit(chat, msgs, max_len, spec.truncation, enc).outcome] += 1
    over = sum(n > max_len for n in lengths)
    share = over / len(lengths) if lengths else 0.0
    return {"n": len(lengths), "max_seq_len": max_len, "reason": why, "explicit": explicit,
            "batch_size": batch, "grad_accum": accum,
            "policy": spec.truncation, "context": context,
            "p50": percentile(lengths, 50), "p98": percentile(lengths, PERCENTILE), "max": max(lengths, default=0),
            "over": over, "over_share": round(share, 4), "cut": outcomes["cut"], "dropped": outcomes["dropped"],
            "histogram": histogram(lengths), "needs_confirm": explicit and share > CONFIRM_SHARE}


def plan_run_data(spec, data_dir: Path, workspace: str | Path) -> dict:
    """plan() on a run folder's training split, with the base model's tokenizer."""
    path = Path(data_dir) / "train.jsonl"
    convs = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                convs.append(json.loads(line)["messages"])
    return plan(spec, convs, chat_for_base(spec.base_model, workspace), model_context(spec.base_model, workspace))


def refusal(report: dict) -> str:
    """The one-line reason an explicit max_seq_len is refused without --allow-truncation."""
    return (f"max_seq_len {report['max_seq_len']} would truncate {report['over']} of {report['n']} training "
            f"examples ({report['over_share']:.0%}, over {CONFIRM_SHARE:.0%}; {report['policy']}: "
            f"{report['cut']} cut, {report['dropped']} dropped): use max_seq_len auto "
            f"(p98 is {report['p98']} tokens) or pass --allow-truncation")


def summary_lines(report: dict, bar_width: int = 30) -> list[str]:
    """The report as text: one line of figures, the histogram, one line on what the policy does."""
    out = [f"lengths of {report['n']} training examples (tokens): p50 {report['p50']} · p98 {report['p98']} · "
           f"max {report['max']}",
           f"max_seq_len {report['max_seq_len']} ({report['reason']})"]
    hist = report.get("histogram") or []
    top = max((b["count"] for b in hist), default=0)
    for b in hist:
        bar = "█" * (round(b["count"] / top * bar_width) if top else 0)
        mark = " ◀ max_seq_len" if b["from"] <= report["max_seq_len"] < b["to"] else ""
        out.append(f"  {b['from']:>5}–{b['to']:<5} {b['count']:>6} {bar}{mark}")
    if report["over"]:
        if report["policy"] == "middle-of-user":
            how = (f"{report['cut']} cut in the middle of the longest user turn (marked \"[…]\"), "
                   f"{report['dropped']} dropped (too long even so)")
        else:
            how = f"{report['dropped']} dropped (truncation: drop)"
        out.append(f"{report['over']} longer than {report['max_seq_len']} ({report['over_share']:.1%}): {how}; "
                   f"assistant turns are never cut")
    else:
        out.append(f"every example fits in {report['max_seq_len']} tokens")
    return out
