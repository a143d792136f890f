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
