"""`forge demo`: the whole loop on the built-in reminders task, in a fresh workspace, on a CPU.

import data/demo/reminders.jsonl → approve → export the dataset → train with the demo defaults → export Q4_K_M →
evaluate against `base` on data/demo/reminders_heldout.jsonl (tasks, times and phrasings the training data never
contains; it is never imported) → the comparison.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from forge.config import REPO_ROOT, Config
from forge.store import Store

DEMO_DIR = REPO_ROOT / "data" / "demo"
MARKER = ".forge-demo-workspace"
# Tuned on this 2-core CPU: LoRA r16 on attention and MLP, lr 1e-3, batch 8 (see the closing notes for figures).
DEMO_SPEC = {"max_steps": 120, "batch_size": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32,
             "max_seq_len": 128, "eval_steps": 40, "save_steps": 40, "lr_scheduler": "cosine", "warmup_ratio": 0.05}


class DemoError(Exception):
    """The demo cannot run; the message says why."""


def fresh_workspace(path: Path) -> Path:
    """An empty workspace. A folder is only ever wiped when an earlier demo created it (it has the marker)."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise DemoError(f"{path} is not empty and was not made by `forge demo`; pick another --workspace")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by forge demo; safe to delete\n")
    return path


def run_demo(workspace: Path, say: Callable[[str], None] = print, max_steps: int | None = None,
             heldout_limit: int | None = None, base_model: str | None = None) -> dict:
    from forge import eval as ev
    from forge import export as ex
    from forge.dataset import export_dataset
    from forge.extract import run_extract
    from forge.train import runs
    from forge.train.events import as_float
    from forge.train.spec import TrainSpec

    t0 = time.perf_counter()
    ws = fresh_workspace(Path(workspace))
    config = Config(workspace=str(ws))
    store = Store.for_workspace(ws)
    report = run_extract(store, "jsonl", DEMO_DIR / "reminders.jsonl", config)
    ids = store.ids(status="pending")
    store.decide("approve-all", {i: {"status": "approved"} for i in ids}, reason="forge demo")
    say(f"imported and approved {len(ids)} requests ({report['duplicates']} duplicates skipped)")
    ds = export_dataset(store, ws / "exports" / "dataset", config)
    say(f"dataset: train {ds['train']}, val {ds['val']}, test {ds['test']}")

    spec = TrainSpec(**{**DEMO_SPEC, **({"max_steps": max_steps} if max_steps else {}),
                        **({"base_model": base_model} if base_model else {})})
    run_id, run_dir = runs.create_run(store, config, spec, ws / "exports" / "dataset")

    def on_event(e: dict) -> None:
        if e["event"] == "log" and (e["step"] % 10 == 0 or e["step"] == e.get("max_steps")):
            eta = as_float(e.get("eta_s"))
            say(f"train step {e['step']}/{e.get('max_steps')} loss {as_float(e['loss']):.3f}"
                + (f" (~{eta / 60:.1f} min left)" if eta else ""))
        elif e["event"] in ("info", "warning"):
            say(e.get("message", ""))

    final = runs.wait(runs.launch(run_dir), run_dir, on_event)
    store.update_run(run_id, final.get("status", "failed"), {k: v for k, v in final.items() if k != "status"})
    if final.get("status") != "completed":
        raise DemoError(f"training {final.get('status')}: {final.get('message')}")
    say("exporting Q4_K_M…")
    model = ex.export_run(store, config, run_id, "q4_k_m", lambda stage, msg: say(f"[{stage}] {msg}"))
    ex.register_bundled_base(store, config)
    held = DEMO_DIR / "reminders_heldout.jsonl"
    if heldout_limit:
        limited = ws / "exports" / "heldout.jsonl"
        limited.write_text("".join(held.read_text().splitlines(keepends=True)[:heldout_limit]))
        held = limited
    say("evaluating tuned vs base on held-out requests…")
    result = ev.evaluate(store, model["model_id"], "base", test_file=str(held), max_tokens=32)
    result.update({"run_id": run_id, "model_id": model["model_id"], "workspace": str(ws),
                   "minutes": round((time.perf_counter() - t0) / 60, 1)})
    store.close()
    return result
