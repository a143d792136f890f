"""Counting tokens the way training will: the base model's own tokenizer, loaded with the `tokenizers` library
(a Rust tokenizer, ~0.1 s to load, no torch or transformers import).

Where the tokenizer comes from, first found wins:
1. `validation.tokenizer` in config (a folder holding tokenizer.json, or the file itself);
2. the workspace's materialised base model (`models/base-hf/tokenizer.json`, written by the first training run);
3. a copy made once from the bundled SmolLM2 GGUF into `<workspace>/cache/base-tokenizer/` (transformers reads the
   GGUF's vocabulary; a few seconds, once per workspace).
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

from forge.errors import ForgeError

_lock = threading.Lock()
_cache: dict[str, TokenCounter] = {}


class TokenizerUnavailable(ForgeError):
    """No tokenizer could be found or made; the message says why."""


class TokenCounter:
    """count(text) → tokens of one tokenizer (no special tokens added), and what chunking a long text needs:

    - `spans(text)`: each token's (start, end) character offsets, from the one pass that counts it;
    - `max_token_bytes`: the most UTF-8 bytes one token stands for (a byte-level BPE's longest vocabulary entry),
      so a text longer than `budget × max_token_bytes` bytes is over the budget uncounted; None where a token can
      stand for any length (an unknown-word token);
    - `additive`: counts add up where a text is cut between a non-space character and a space or newline,
      count(x + y) == count(x) + count(y), and the text's tokens split there too. True for a byte-level BPE
      whose pre-tokenizer is the GPT-2 pattern (SmolLM2's): BPE merges only inside a pre-token, and that pattern
      never joins a space or newline to the character before it. Where it holds, the count of any piece of a
      text cut that way is a difference of two positions in the text's one tokenization."""

    def __init__(self, tok) -> None:
        self._tok = tok

    @functools.cached_property
    def _spec(self) -> dict:
        import json

        spec = json.loads(self._tok.to_str())  # ~50 ms for a 49k vocabulary: only when a long text needs it
        model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
        added = spec.get("added_tokens") or []
        # Every input byte is one byte-level character, nothing is rewritten first, and no token takes in the
        # whitespace around it: what holds for SmolLM2's tokenizer and GPT-2's.
        byte_level = "ByteLevel" in (pre.get("type"), (spec.get("decoder") or {}).get("type"))
        plain = (model.get("type") == "BPE" and byte_level and spec.get("normalizer") is None
                 and not model.get("byte_fallback") and model.get("unk_token") is None
                 and not any(a.get("lstrip") or a.get("rstrip") or a.get("single_word")
                             or any(c.isspace() for c in a["content"]) for a in added))
        longest = max((len(t) for t in model.get("vocab") or {}), default=0)  # one character per byte
        return {"max_token_bytes": (max([longest] + [len(a["content"].encode("utf-8")) for a in added]) or None)
                if plain else None,
                "additive": plain and pre.get("type") == "ByteLevel" and pre.get("use_regex", True)
                and not pre.get("add_prefix_space") and model.get("dropout") is None}

    @property
    def max_token_bytes(self) -> int | None:
        return self._spec["max_token_bytes"]

    @property
    def additive(self) -> bool:
        return self._spec["additive"]

    def __call__(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self._tok.encode(text, add_special_tokens=False).offsets


class ByteCounter:
    """UTF-8 bytes as the count: an upper bound for a byte-level BPE tokenizer, for when none can be loaded."""

    max_token_bytes = 1
    additive = True

    def __call__(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [(i, i + 1) for i, ch in enumerate(text) for _ in range(len(ch.encode("utf-8")))]


def _from_file(path: Path) -> TokenCounter:
    from tokenizers import Tokenizer

    return TokenCounter(Tokenizer.from_file(str(path)))


def _bundled_copy(target: Path) -> Path:
    """tokenizer.json of the bundled base, written once into `target` (a folder)."""
    out = target / "tokenizer.json"
    if out.exists():
        return out
    from forge import bundled_gguf

    gguf = bundled_gguf()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = target.with_name(target.name + ".partial")
    tok.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.rename(target)
    return out


def tokenizer_file(workspace: str | Path, configured: str | None = None) -> Path:
    if configured:
        p = Path(configured).expanduser()
        p = p / "tokenizer.json" if p.is_dir() else p
        if not p.exists():
            raise TokenizerUnavailable(f"validation.tokenizer: {p} does not exist (a folder with tokenizer.json)")
        return p
    ws = Path(workspace)
    materialised = ws / "models" / "base-hf" / "tokenizer.json"
    if materialised.exists():
        return materialised
    try:
        return _bundled_copy(ws / "cache" / "base-tokenizer")
    except Exception as e:  # noqa: BLE001 - any failure here means "count without a tokenizer"
        raise TokenizerUnavailable(f"the base model's tokenizer could not be prepared: {e}") from None


def token_counter(workspace: str | Path, configured: str | None = None) -> TokenCounter:
    """count(text) → tokens of the base model's tokenizer (no special tokens). Cached per tokenizer file."""
    path = tokenizer_file(workspace, configured)
    key = str(path.resolve())
    with _lock:
        if key not in _cache:
            _cache[key] = _from_file(path)
        return _cache[key]


class _Lazy:
    """A counter that loads its tokenizer on first use (see lazy_counter)."""

    def __init__(self, workspace: str | Path, configured: str | None) -> None:
        self._args = (workspace, configured)
        self._counter: TokenCounter | ByteCounter | None = None

    def _get(self) -> TokenCounter | ByteCounter:
        if self._counter is None:
            try:
                self._counter = token_counter(*self._args)
            except TokenizerUnavailable:
                self._counter = ByteCounter()
        return self._counter

    def __call__(self, text: str) -> int:
        return self._get()(text)

    def spans(self, text: str) -> list[tuple[int, int]]:
        return self._get().spans(text)

    @property
    def max_token_bytes(self) -> int | None:
        return self._get().max_token_bytes

    @property
    def additive(self) -> bool:
        return self._get().additive


def lazy_counter(workspace: str | Path, configured: str | None = None) -> _Lazy:
    """Like token_counter, but the tokenizer is only loaded the first time a text needs counting (most notes are
    short enough to fit uncounted). If it cannot be loaded, counts fall back to UTF-8 bytes, an upper bound for a
    byte-level BPE tokenizer, so a note is never left too long."""
    return _Lazy(workspace, configured)
