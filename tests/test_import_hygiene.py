"""Heavy modules stay out of start-up: `forge --help` and the TUI's import load no torch/transformers, and the
core (forge/) never imports textual. Each check runs in a fresh interpreter, as a user's start would."""

import ast
import json
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ["torch", "transformers", "sentence_transformers", "peft", "trl", "llama_cpp", "numpy"]


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_forge_help_imports_no_heavy_module():
    mods = loaded_after("import sys\nfrom tui.launch import cli as main\n"
                        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    assert not {m for m in HEAVY if m in mods}
    assert "textual" not in mods
    assert "fastapi" not in mods and "uvicorn" not in mods  # `serve` imports them when it runs


def test_tui_app_imports_no_heavy_module():
    mods = loaded_after("import tui.app")
    assert not {m for m in HEAVY if m in mods}


def test_core_and_companion_never_import_textual():
    offenders = []
    for path in [*(REPO / "forge").rglob("*.py"), *(REPO / "companion").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "textual" or n.startswith(("textual.", "tui")) for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []



# ---- the layout: forge/ by pipeline stage (README, "Layout") ---------------------------------------------------
# The ground floor (forge/__init__.py, errors, config) serves every stage and imports none; the stages come in this
# order and each imports only those before it; cli/ and demo use them all. One exception: training starts from the
# base model (forge/models/base_model.py), while export reads the checkpoint marker the runs write.
GROUND = {"forge", "forge.errors", "forge.config"}
STAGES = ["store", "data", "llm", "train", "models", "eval"]
UP_ALLOWED = {("train", "forge.models.base_model")}


def forge_modules() -> dict:
    """Dotted module name → path, for every module under forge/."""
    out = {}
    for path in (REPO / "forge").rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path, modules: dict) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, top-level or inside a function: `from forge.data import curate`
    names forge.data.curate, `from forge.store import Store` names forge.store."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node.lineno, f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module)
                    for a in node.names]
    return out


def stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "forge" and len(parts) > 1 and parts[1] in STAGES else None


def offending_imports(rule) -> list[str]:
    """'path:line imports name' for every import under forge/ for which rule(importer, imported) is true."""
    modules = forge_modules()
    return [f"{path.relative_to(REPO)}:{line} imports {name}" for m, path in sorted(modules.items())
            for line, name in imports_of(path, modules) if rule(m, name)]


def test_data_and_store_import_no_train_models_or_eval():
    assert offending_imports(lambda m, name: stage_of(m) in ("data", "store")
                             and stage_of(name) in ("train", "models", "eval")) == []


def test_forge_imports_neither_tui_nor_companion():
    assert offending_imports(lambda m, name: name.split(".")[0] in ("tui", "companion")) == []


def test_no_import_runs_up():
    def up(m, name):
        here, there = stage_of(m), stage_of(name)
        if m in GROUND:
            return there is not None
        return (here is not None and there is not None and STAGES.index(there) > STAGES.index(here)
                and (here, name) not in UP_ALLOWED)

    assert offending_imports(up) == []


def test_no_import_circle_in_forge():
    """No module of forge/ reaches itself through its imports. An import of a module's own package is left out:
    Python runs the package first anyway (forge/cli's command modules import forge.cli, which imports them)."""
    modules = forge_modules()
    graph = {m: {name for _, name in imports_of(path, modules) if name in modules and name != m
                 and not m.startswith(name + ".")} for m, path in modules.items()}
    circles, done = [], set()

    def visit(m: str, trail: list[str]) -> None:
        if m in trail:
            circles.append(" -> ".join(trail[trail.index(m):] + [m]))
        elif m not in done:
            for t in sorted(graph[m]):
                visit(t, trail + [m])
            done.add(m)

    for m in sorted(graph):
        visit(m, [])
    assert circles == []
