"""Hand-off formats: a finished run as the folders other engines load as they are, with the exact commands.

- `hf`: the merged model as a safetensors folder with its tokenizer and the chat template the run trained with —
  what `vllm serve`, SGLang and TGI load (and transformers' `from_pretrained`).
- `peft`: the LoRA adapter folder (adapter_config.json + adapter_model.safetensors + tokenizer files) for vLLM's
  multi-LoRA serving (`--enable-lora --lora-modules name=path`), PEFT's `PeftModel.from_pretrained`, and Ollama's
  `ADAPTER` (safetensors adapters of Llama-family models), with `base_model_name_or_path` pointing at a base folder
  that exists on this machine.

Each export writes README.md into its folder with the commands for vLLM, SGLang/TGI, llama-server and Ollama,
filled in with this export's paths; the CLI prints them too. The GGUF route (llama-server `-m`, `ollama create`)
uses `forge export RUN_ID --quant …`, whose model folder holds the GGUF and a Modelfile.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from forge.config import Config
from forge.models.commands import commands
from forge.models.export import ExportError, check_adapter, merge
from forge.store import Store

FORMATS = ("hf", "peft")
BUNDLED_BASE_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _base_dir(info: dict, config: Config) -> str:
    base = info.get("base_path")
    if base and Path(base).exists():
        return str(Path(base).resolve())
    from forge.models.base_model import resolve_base

    return str(resolve_base(info.get("base_model", ""), config.workspace_path()))


def _gguf_of_run(store: Store, run_id: str) -> dict | None:
    models = [m for m in store.models() if m.get("run_id") == run_id and m["status"] == "ready"
              and (m.get("meta") or {}).get("kind") != "adapter"]  # an adapter is not a model llama-server runs alone
    return models[0] if models else None


def _readme(fmt: str, run_id: str, path: Path, base_dir: str, cmds: dict[str, str], base_note: str) -> str:
    what = ("the merged model (safetensors, tokenizer, chat template)" if fmt == "hf"
            else "the LoRA adapter (PEFT layout) for the base model below")
    lines = [f"# {run_id} — {what}", "", f"Exported by forge from run `{run_id}`.", ""]
    if fmt == "peft":
        lines += [f"Base model: `{base_dir}`{base_note}", ""]
    lines += ["## Serve it", ""]
    for engine, cmd in cmds.items():
        lines += [f"**{engine}**", "", "```", cmd, "```", ""]
    lines += ["All commands bind to 127.0.0.1; change --host to expose them on a network.", ""]
    return "\n".join(lines)


def export_handoff(store: Store, config: Config, run_id: str, fmt: str, out: str | Path | None = None,
                   progress: Callable[[str, str], None] | None = None) -> dict:
    """Write RUN_ID as `fmt` (hf | peft) into `out` (default <workspace>/exports/<run_id>-<fmt>); returns
    {format, path, commands, readme}. Refuses to overwrite a folder it did not write."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: use gguf (the default), {', '.join(FORMATS)}")
    for var, value in (("HF_HUB_OFFLINE", "1"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                       ("TRANSFORMERS_VERBOSITY", "error"), ("TQDM_DISABLE", "1")):
        os.environ.setdefault(var, value)
    say = progress or (lambda stage, msg: None)
    run = store.get_run(run_id)
    adapter = Path(run["run_dir"]) / "adapter"
    info = check_adapter(adapter)
    target = Path(out) if out else config.workspace_path() / "exports" / f"{run_id}-{fmt}"
    if target.exists() and any(target.iterdir()) and not (target / ".forge-export").exists():
        raise ExportError(f"{target} exists and was not written by forge export; pick another --out")
    say("base", "locating the base model")
    base_dir = _base_dir(info, config)
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    name = f"forge-{run_id}"
    adapter_cfg = json.loads((adapter / "adapter_config.json").read_text())
    try:
        if fmt == "hf":
            say("merge", "merging the adapter into its base (safetensors)")
            merge(adapter, base_dir, tmp, then_gguf=False)
        else:
            say("copy", "copying the adapter")
            shutil.copytree(adapter, tmp, ignore=shutil.ignore_patterns("FORGE_*", "forge_adapter.json", "*.partial"))
            adapter_cfg["base_model_name_or_path"] = base_dir
            (tmp / "adapter_config.json").write_text(json.dumps(adapter_cfg, indent=2))
            (tmp / "Modelfile").write_text(_ollama_adapter_modelfile(store, adapter))
        (tmp / ".forge-export").write_text(json.dumps({"run_id": run_id, "format": fmt}))
        cmds = commands(fmt, target.resolve(), name, base_dir, run_id, _gguf_of_run(store, run_id),
                        None, adapter_cfg.get("r"))
        base_note = (f" (the bundled SmolLM2-135M-Instruct; on a machine with hub access `{BUNDLED_BASE_HUB_ID}` "
                     f"is the same model)" if info.get("base_model") == "smollm2-135m-instruct" else "")
        readme = _readme(fmt, run_id, target.resolve(), base_dir, cmds, base_note)
        (tmp / "README.md").write_text(readme)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"format": fmt, "path": str(target.resolve()), "base": base_dir, "commands": cmds,
            "readme": str(target / "README.md")}


def _ollama_adapter_modelfile(store: Store, adapter: Path) -> str:
    """Ollama: FROM the base GGUF registered as `base` (when it is), ADAPTER this folder (safetensors adapters of
    Llama-family models)."""
    base = store.get_model("base", missing_ok=True)
    lines = [f"FROM {base['path']}" if base else "FROM <path of the base model's GGUF>", "ADAPTER ."]
    template = (adapter / "chat_template.jinja")
    if template.exists() and "<|im_start|>" in template.read_text():
        lines.append('TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
                     '{{ end }}<|im_start|>assistant\n"""')
        lines.append('PARAMETER stop "<|im_end|>"')
    return "\n".join(lines) + "\n"
