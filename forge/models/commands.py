"""How each export is served: the exact commands for llama-server, Ollama, vLLM, SGLang, TGI and forge's companion,
filled in with the export's paths (a GGUF from `forge export`, a LoRA adapter GGUF from `forge export --adapter`, an
HF or PEFT folder from `forge export --format`). The CLI prints them and each export's README.md holds them."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forge.config import Config


def commands(fmt: str, path: Path, name: str, base_dir: str, run_id: str, gguf: dict | None, base_gguf: str | None,
             lora_rank: int | None = None) -> dict[str, str]:
    """Engine → the command that serves this export (loopback by default, as forge's own companion)."""
    q = shlex.quote
    out: dict[str, str] = {}
    if fmt == "hf":
        out["vllm"] = f"vllm serve {q(str(path))} --served-model-name {q(name)} --host 127.0.0.1 --port 8000"
        out["sglang"] = f"python -m sglang.launch_server --model-path {q(str(path))} --host 127.0.0.1 --port 30000"
        out["tgi"] = f"text-generation-launcher --model-id {q(str(path))} --hostname 127.0.0.1 --port 8080"
    else:
        rank = f" --max-lora-rank {lora_rank}" if lora_rank else ""
        out["vllm"] = (f"vllm serve {q(base_dir)} --enable-lora --lora-modules {q(name + '=' + str(path))}{rank} "
                       f"--host 127.0.0.1 --port 8000")
        out["ollama"] = f"ollama create {q(name)} -f {q(str(path / 'Modelfile'))}"
    if gguf:
        out["llama-server"] = f"llama-server -m {q(gguf['path'])} --host 127.0.0.1 --port 8080"
        out.setdefault("ollama", f"ollama create {q(name)} -f {q(str(Path(gguf['path']).parent / 'Modelfile'))}")
    else:
        hint = f"forge export {run_id}"
        out["llama-server"] = f"{hint}   # then: llama-server -m <the GGUF it prints> --host 127.0.0.1 --port 8080"
        out.setdefault("ollama", f"{hint}   # then: ollama create {name} -f <its folder>/Modelfile")
    return out


def gguf_commands(gguf: Path, model_id: str, info: dict, config: Config) -> dict[str, str]:
    """The commands for a GGUF export: llama-server, Ollama (the Modelfile beside it), forge's companion, and
    vLLM's (experimental) GGUF loader, which takes the tokenizer from the base model folder."""
    q = shlex.quote
    gguf = Path(gguf).resolve()
    base = info.get("base_path") or "<the base model folder>"
    return {"llama-server": f"llama-server -m {q(str(gguf))} --host 127.0.0.1 --port 8080",
            "ollama": f"ollama create {q('forge-' + model_id)} -f {q(str(gguf.parent / 'Modelfile'))}",
            "forge": f"forge serve --model {q(model_id)}",
            "vllm": f"vllm serve {q(str(gguf))} --tokenizer {q(str(base))} --host 127.0.0.1 --port 8000"}


def adapter_commands(path: Path, base: dict, model_id: str) -> dict[str, str]:
    q = shlex.quote
    return {"llama-server": f"llama-server -m {q(base['path'])} --lora {q(str(Path(path).resolve()))} "
                            f"--host 127.0.0.1 --port 8080",
            "ollama": f"ollama create {q('forge-' + model_id)} -f {q(str(Path(path).parent / 'Modelfile'))}",
            "forge": f"forge serve --model {q(base['id'])}   # then POST /admin/adapters "
                     f"{{\"adapter_id\": \"{model_id}\"}}"}
