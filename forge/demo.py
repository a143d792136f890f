"""`forge demo`: the whole loop on a built-in task, in a fresh workspace, on a CPU.

import the task's training file → approve → export the dataset → train with the task's demo spec → export Q4_K_M →
evaluate against `base` (and, for summaries, the lead-N extractive baseline) on the task's held-out file → the
comparison with paired 95 % intervals.

Two tasks (data/demo, made by scripts/make_demo_data.py and scripts/make_summaries_data.py):
- reminders: an informal request → "<task> | <when>". The held-out requests use sentence frames, tasks and time
  expressions the training file never contains.
- summarize: a short dialogue or counseling-session transcript → a two-to-three sentence summary that keeps any
  `{{RED:…}}` risk marker byte for byte. The held-out dialogues are other situations, names and phrasings.
The held-out file is never imported: nothing of it is in the store the model trains from.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from forge.config import REPO_ROOT, Config
from forge.errors import ForgeError
from forge.store import Store
from forge.validate import MARKER_RE

DEMO_DIR = REPO_ROOT / "data" / "demo"
MARKER = ".forge-demo-workspace"


@dataclass(frozen=True)
class DemoTask:
    train_file: str
    heldout_file: str
    spec: dict
    """The train spec (forge/train/spec.py fields), tuned so the run fits the time below on a 2-core CPU."""
    unit: str
    """What one example is, for the messages ("requests", "dialogues")."""
    max_tokens: int | str = "auto"
    """Eval output budget: a number, or "auto" from the reference lengths."""


# Both tuned on a 2-core CPU (figures in the README's demo paragraph): LoRA r16 on attention and MLP, cosine lr.
DEMO_SPEC = {"max_steps": 120, "batch_size": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32,
             "max_seq_len": 128, "eval_steps": 40, "save_steps": 40, "lr_scheduler": "cosine", "warmup_ratio": 0.05}
SUMMARIES_SPEC = {"max_steps": 100, "batch_size": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32,
                  "max_seq_len": 384, "eval_steps": 50, "save_steps": 50, "lr_scheduler": "cosine",
                  "warmup_ratio": 0.05}
TASKS = {
    "reminders": DemoTask("reminders.jsonl", "reminders_heldout.jsonl", DEMO_SPEC, "requests", 32),
    "summarize": DemoTask("summaries.jsonl", "summaries_heldout.jsonl", SUMMARIES_SPEC, "dialogues", "auto"),
}


class DemoError(ForgeError):
    """The demo cannot run; the message says why."""


def markers_kept(prompts: list[str], outputs: list[str]) -> dict | None:
    """Seed 003's rule, measured: every `{{RED:…}}`-style marker of a source must come back byte for byte.

    kept: of the `n` items whose source has a marker, those whose output has each of them exactly (as often);
    invented: items whose output has a marker that is not in the source (made up, or altered by a single byte).
    None when no source has a marker."""
    n = kept = invented = 0
    for prompt, output in zip(prompts, outputs):
        source, said = Counter(MARKER_RE.findall(prompt)), Counter(MARKER_RE.findall(output or ""))
        invented += bool(said - source)
        if source:
            n += 1
            kept += not (source - said)
    return {"n": n, "kept": kept, "share": kept / n, "invented": invented} if n else None


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
             heldout_limit: int | None = None, base_model: str | None = None, task: str = "reminders") -> dict:
    """Run the loop for `task` (a key of TASKS) in a fresh `workspace`; the eval result (forge.eval.evaluate's
    dict) plus run_id, model_id, workspace, task, minutes (all) and train_minutes (training alone), and markers:
    system → markers_kept (None for each when no held-out source has a marker)."""
    from forge import eval as ev
    from forge import export as ex
    from forge.dataset import export_dataset
    from forge.extract import run_extract
    from forge.train import runs
    from forge.train.events import as_float
    from forge.train.spec import TrainSpec

    if task not in TASKS:
        raise DemoError(f"unknown demo task {task!r}: use one of {', '.join(TASKS)}")
    spec_task = TASKS[task]
    t0 = time.perf_counter()
    ws = fresh_workspace(Path(workspace))
    config = Config(workspace=str(ws))
    store = Store.for_workspace(ws)
    report = run_extract(store, "jsonl", DEMO_DIR / spec_task.train_file, config)
    ids = store.ids(status="pending")
    store.decide("approve-all", {i: {"status": "approved"} for i in ids}, reason="forge demo")
    say(f"imported and approved {len(ids)} {spec_task.unit} ({report['duplicates']} duplicates skipped)")
    ds = export_dataset(store, ws / "exports" / "dataset", config)
    say(f"dataset: train {ds['train']}, val {ds['val']}, test {ds['test']}")

    spec = TrainSpec(**{**spec_task.spec, **({"max_steps": max_steps} if max_steps else {}),
                        **({"base_model": base_model} if base_model else {})})
    run_id, run_dir = runs.create_run(store, config, spec, ws / "exports" / "dataset")

    def on_event(e: dict) -> None:
        if e["event"] == "log" and (e["step"] % 10 == 0 or e["step"] == e.get("max_steps")):
            eta = as_float(e.get("eta_s"))
            say(f"train step {e['step']}/{e.get('max_steps')} loss {as_float(e['loss']):.3f}"
                + (f" (~{eta / 60:.1f} min left)" if eta else ""))
        elif e["event"] in ("info", "warning"):
            say(e.get("message", ""))

    t_train = time.perf_counter()
    proc = runs.launch(run_dir)
    runs.wait(proc, run_dir, on_event)
    train_minutes = round((time.perf_counter() - t_train) / 60, 1)
    final = runs.finalize(store, run_id, run_dir, proc.returncode)
    if final.get("status") != "completed":
        raise DemoError(f"training {final.get('status')}: {final.get('message')}")
    say("exporting Q4_K_M…")
    model = ex.export_run(store, config, run_id, "q4_k_m", lambda stage, msg: say(f"[{stage}] {msg}"))
    ex.register_bundled_base(store, config)
    held = DEMO_DIR / spec_task.heldout_file
    if heldout_limit:
        limited = ws / "exports" / "heldout.jsonl"
        limited.write_text("".join(held.read_text(encoding="utf-8").splitlines(keepends=True)[:heldout_limit]),
                           encoding="utf-8")
        held = limited
    say(f"evaluating tuned vs base on held-out {spec_task.unit}…")
    last = [0.0]

    def progress(model_id: str, done: int, total: int) -> None:
        if done == total or time.monotonic() - last[0] > 15:
            last[0] = time.monotonic()
            say(f"{model_id}: {done}/{total}")

    result = ev.evaluate(store, model["model_id"], "base", test_file=str(held), max_tokens=spec_task.max_tokens,
                         progress=progress, config=config)
    stored = ev.latest_pair(store, model["model_id"], "base", result["dataset"])
    if stored:
        prompts = [r["prompt"] for r in stored[0]["outputs"]]
        systems = {"tuned": stored[0]["outputs"], "base": stored[1]["outputs"]}
        result["markers"] = {name: markers_kept(prompts, ev.outputs_of(recs)) for name, recs in systems.items()}
        if result.get("lead"):
            result["markers"][result["lead"]["id"]] = markers_kept(prompts, result["lead"]["outputs"])
    result.update({"run_id": run_id, "model_id": model["model_id"], "workspace": str(ws), "task": task,
                   "train_minutes": train_minutes, "minutes": round((time.perf_counter() - t0) / 60, 1)})
    store.close()
    return result
