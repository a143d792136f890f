"""Counting tokens the way training will: the base model's own tokenizer, loaded with the `tokenizers` library
(a Rust tokenizer, ~0.1 s to load, no torch or transformers import).

Where the tokenizer comes from, first found wins:
1. `validation.tokenizer` in config (a folder holding tokenizer.json, or the file itself);
2. the workspace's materialised base model (`models/base-hf/tokenizer.json`, written by the first training run);
3. a copy made once from the bundled SmolLM2 GGUF into `<workspace>/cache/base-tokenizer/` (transformers reads the
   GGUF's vocabulary; a few seconds, once per workspace).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from forge.errors import ForgeError

_lock = threading.Lock()
_cache: dict[str, Callable[[str], int]] = {}


class TokenizerUnavailable(ForgeError):
    """No tokenizer could be found or made; the message says why."""


def _from_file(path: Path) -> Callable[[str], int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))

    def count(text: str) -> int:
        return len(tok.encode(text, add_special_tokens=False).ids)

    return count


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


def token_counter(workspace: str | Path, configured: str | None = None) -> Callable[[str], int]:
    """count(text) → tokens of the base model's tokenizer (no special tokens). Cached per tokenizer file."""
    path = tokenizer_file(workspace, configured)
    key = str(path.resolve())
    with _lock:
        if key not in _cache:
            _cache[key] = _from_file(path)
        return _cache[key]


def lazy_counter(workspace: str | Path, configured: str | None = None) -> Callable[[str], int]:
    """Like token_counter, but the tokenizer is only loaded the first time a text needs counting (most notes are
    short enough to fit uncounted). If it cannot be loaded, counts fall back to UTF-8 bytes, an upper bound for a
    byte-level BPE tokenizer, so a note is never left too long."""
    state: dict = {}

    def count(text: str) -> int:
        if "fn" not in state:
            try:
                state["fn"] = token_counter(workspace, configured)
            except TokenizerUnavailable:
                state["fn"] = lambda t: len(t.encode("utf-8"))
        return state["fn"](text)

    return count
