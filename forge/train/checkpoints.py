"""A checkpoint's completion marker: written last by the runner (forge/train/runner.py) into each checkpoint and
the final adapter, with the adapter's sha256, so a save cut short or a file changed since reads as incomplete. The
runs that resume from checkpoints and the export that reads an adapter check it here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from forge.store import sha256_file

MARKER = "forge_complete.json"
ADAPTER_FILE = "adapter_model.safetensors"


def write_marker(ckpt: Path, step: int) -> None:
    adapter = ckpt / ADAPTER_FILE
    info = {"step": step, "time": time.time(), "adapter_sha256": sha256_file(adapter) if adapter.exists() else None}
    tmp = ckpt / (MARKER + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, ckpt / MARKER)


def marker_problem(folder: Path, required: bool = True) -> str | None:
    """Why the adapter in `folder` cannot be trusted (missing, unmarked, corrupted), or None. The marker is
    written last and records the adapter's sha256; `required=False` accepts a folder without one."""
    marker = folder / MARKER
    if not marker.exists():
        return "no completion marker (the save was interrupted)" if required else None
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return "unreadable completion marker"
    adapter = folder / ADAPTER_FILE
    if not adapter.exists():
        return f"{ADAPTER_FILE} is missing"
    if info.get("adapter_sha256") and sha256_file(adapter) != info["adapter_sha256"]:
        return f"{ADAPTER_FILE} does not match its checksum (corrupted)"
    return None


def checkpoint_ok(ckpt: Path) -> tuple[bool, str]:
    problem = marker_problem(ckpt)
    if problem is None and not (ckpt / "trainer_state.json").exists():
        problem = "trainer_state.json is missing"
    return problem is None, problem or ""


def latest_checkpoint(run_dir: Path, warn=lambda msg: None) -> Path | None:
    """The newest complete checkpoint; incomplete or corrupted ones are skipped with a warning."""
    ckpts = sorted((p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.is_dir()),
                   key=lambda p: int(p.name.rsplit("-", 1)[1]), reverse=True)
    for ckpt in ckpts:
        ok, why = checkpoint_ok(ckpt)
        if ok:
            return ckpt
        warn(f"skipping {ckpt.name}: {why}")
    return None
