"""`forge demo`: the whole loop on a built-in task, in a fresh workspace, on a CPU.

import the task's training file → approve → export the dataset → train with the task's demo spec → export the GGUF
(Q4_K_M; Q8_0 on Gemma) → evaluate against `base` (and, for summaries, the lead-N extractive baseline) on the task's
held-out file → the comparison with paired 95 % intervals.

Three tasks (data/demo, made by scripts/make_demo_data.py, make_summaries_data.py and make_intent_data.py), and
voice (run_voice_demo: a public-domain diary as a vault, the voice recipe, Eval with the voice judge):
- reminders: an informal request → "<task> | <when>". The held-out requests use sentence frames, tasks and time
  expressions the training file never contains.
- summarize: a short dialogue or counseling-session transcript → a two-to-three sentence summary that keeps any
  `{{RED:…}}` risk marker byte for byte. The held-out dialogues are other situations, names and phrasings.
- intent: a request → the JSON `POST /api/convert` returns ({"intent", "entities": [{"type", "value"}]}), asked
  with that route's system prompt. Held-out frames and entity values never occur in training.
The held-out file is never imported: nothing of it is in the store the model trains from.

`--base ID` (any base `forge models bases` lists; default the bundled SmolLM2): every run trains on that base and
Eval compares the tuned model with that base's own GGUF (forge.eval's "base": the model's own base).

`forge demo --adapters` (run_adapters_demo): reminders and intent each trained as its own LoRA run on the same base,
each exported as a GGUF adapter (no merge), ONE companion serving the base with both adapters loaded, and each
task's held-out set asked of its adapter and of the base through that companion (the OpenAI `model` field picks).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from forge.config import REPO_ROOT, Config
from forge.data.validate import MARKER_RE
from forge.errors import ForgeError
from forge.store import Store

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

    leak_text: str = "conversation"
    """What the leakage checks compare (dedup.leak_text). "user" where every example shares a long system prompt
    and an answer skeleton: compared whole, those alone put 97 of the 100 intent held-out requests over the
    near-duplicate threshold (cosine ≥ 0.8), while their requests have none (measured on the committed files)."""

    def config(self, workspace: Path) -> Config:
        return Config(workspace=str(workspace), dedup={"leak_text": self.leak_text})


# Both tuned on a 2-core CPU (figures in the README's demo paragraph): LoRA r16 on attention and MLP, cosine lr.
DEMO_SPEC = {"max_steps": 120, "batch_size": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32,
             "max_seq_len": 128, "eval_steps": 40, "save_steps": 40, "lr_scheduler": "cosine", "warmup_ratio": 0.05}
SUMMARIES_SPEC = {"max_steps": 100, "batch_size": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32,
                  "max_seq_len": 384, "eval_steps": 50, "save_steps": 50, "lr_scheduler": "cosine",
                  "warmup_ratio": 0.05}
# Intent rows are about twice as long as reminders (/api/convert's system prompt, a JSON answer): fewer steps.
INTENT_SPEC = {"max_steps": 80, "batch_size": 8, "learning_rate": 1e-3, "lora_r": 16, "lora_alpha": 32,
               "max_seq_len": 128, "eval_steps": 40, "save_steps": 40, "lr_scheduler": "cosine", "warmup_ratio": 0.05}
TASKS = {
    "reminders": DemoTask("reminders.jsonl", "reminders_heldout.jsonl", DEMO_SPEC, "requests", 32),
    "summarize": DemoTask("summaries.jsonl", "summaries_heldout.jsonl", SUMMARIES_SPEC, "dialogues", "auto"),
    "intent": DemoTask("intent.jsonl", "intent_heldout.jsonl", INTENT_SPEC, "requests", "auto", "user"),
}
VOICE_VAULT = REPO_ROOT / "data" / "voice" / "vault"
"""`forge demo --task voice`: Samuel Pepys's diary of 1666 (public domain; data/voice/README.md), 213 notes."""
VOICE_SPEC = {"eval_steps": 50, "save_steps": 50}
"""On top of the voice recipe (its note chunks, length, epochs, learning rate and decoding), as a new user gets it."""
ADAPTER_TASKS = ("reminders", "intent")
"""`forge demo --adapters`: each its own LoRA run on the same base, served together by one companion."""


class DemoError(ForgeError):
    """The demo cannot run; the message says why."""


def demo_base(base_id: str | None, registered_in: Path | None = None):
    """The base (forge.models.bases.Base) a demo trains on: `base_id` as `forge models bases` lists it for the
    workspace `registered_in` (the bundled SmolLM2, Gemma 3 270M when installed, the bases added there), default
    the bundled SmolLM2. The demo compares the tuned model with the base's GGUF, so a base added as an HF folder
    or a hub id is refused before anything runs."""
    from forge.models import bases

    if not base_id or base_id == bases.DEFAULT_BASE:
        return bases.SMOLLM2
    if "/" in base_id and Path(base_id).is_dir():
        # a local HF folder, as `forge train --set base_model=PATH` takes it (the tests' shared SmolLM2): compared
        # with the registered GGUF it was materialised from (forge.eval's own base)
        return bases.Base(base_id, Path(base_id).name, "?", "?", None, "?", "folder", base_id, "own", builtin=True)
    found = bases.list_bases(Path(registered_in)) if registered_in else \
        [bases.SMOLLM2] + ([bases.GEMMA3] if bases.gemma_available() else [])
    listed = {b.id: b for b in found}
    if base_id not in listed:
        if base_id == bases.GEMMA3_270M:
            raise DemoError(f"--base {base_id}: Gemma 3 270M is not installed (the `gemma` extra: run scripts/setup, "
                            f"or pip install -e '.[gemma]')")
        raise DemoError(f"--base {base_id!r} is not a registered base: use one of {', '.join(listed)} "
                        f"(`forge models bases`; `forge models add-base ID SOURCE` adds one)")
    base = listed[base_id]
    if base.source_kind not in ("package", "gguf"):
        raise DemoError(f"--base {base_id}: a base added as a {base.source_kind} has no GGUF for the demo to compare "
                        f"the tuned model with; add it as a GGUF file (`forge models add-base ID FILE.gguf`)")
    return base


def keep_base(base, workspace: Path) -> None:
    """A base added to another workspace (`forge models add-base`) registered in the demo's fresh one as well,
    where the training runner looks for it."""
    from forge.models import bases

    if not base.builtin:
        bases.add_base(workspace, base.id, base.source, base.chat_template if base.chat_template in bases.TEMPLATES
                       else None, base.license)


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


def curate(store: Store, config: Config, spec_task: DemoTask, out: Path, say: Callable[[str], None],
           prefix: str = "") -> dict:
    """Import the task's training file into `store`, approve every example, export the dataset to `out`."""
    from forge.data.dataset import export_dataset
    from forge.data.extract import run_extract

    report = run_extract(store, "jsonl", DEMO_DIR / spec_task.train_file, config)
    ids = store.ids(status="pending")
    store.decide("approve-all", {i: {"status": "approved"} for i in ids}, reason="forge demo")
    say(f"{prefix}imported and approved {len(ids)} {spec_task.unit} ({report['duplicates']} duplicates skipped)")
    ds = export_dataset(store, out, config)
    say(f"{prefix}dataset: train {ds['train']}, val {ds['val']}, test {ds['test']}")
    return ds


def train(store: Store, config: Config, spec_task: DemoTask, dataset: Path, say: Callable[[str], None],
          max_steps: int | None = None, base_model: str | None = None, prefix: str = "") -> tuple[str, Path, float]:
    """One LoRA run on `dataset` with the task's demo spec, followed to its end: (run_id, run_dir, minutes)."""
    from forge.train import runs
    from forge.train.events import as_float
    from forge.train.spec import TrainSpec

    spec = TrainSpec(**{**spec_task.spec, **({"max_steps": max_steps} if max_steps else {}),
                        **({"base_model": base_model} if base_model else {})})
    from forge.models.base_model import prepare_base

    # a GGUF base not yet in this (fresh) workspace is materialised now, with progress, as `forge train` does,
    # rather than silently inside create_run's length measurement
    prepare_base(spec.base_model, config.workspace_path(), lambda msg: say(f"{prefix}base: {msg}"))
    run_id, run_dir = runs.create_run(store, config, spec, dataset)

    def on_event(e: dict) -> None:
        if e["event"] == "log" and (e["step"] % 10 == 0 or e["step"] == e.get("max_steps")):
            eta = as_float(e.get("eta_s"))
            say(f"{prefix}train step {e['step']}/{e.get('max_steps')} loss {as_float(e['loss']):.3f}"
                + (f" (~{eta / 60:.1f} min left)" if eta else ""))
        elif e["event"] in ("info", "warning"):
            say(prefix + e.get("message", ""))

    t_train = time.perf_counter()
    proc = runs.launch(run_dir)
    try:
        runs.wait(proc, run_dir, on_event)
    finally:
        if proc.poll() is None:  # Ctrl-C or an error while following it: the runner does not outlive the demo
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    minutes = round((time.perf_counter() - t_train) / 60, 1)
    final = runs.finalize(store, run_id, run_dir, proc.returncode)
    if final.get("status") != "completed":
        raise DemoError(f"training {final.get('status')}: {final.get('message')}")
    return run_id, run_dir, minutes


def first_rows(held: Path, limit: int | None, out: Path) -> Path:
    """The held-out file, or a copy of its first `limit` lines at `out` (a quick check of the loop)."""
    if not limit:
        return held
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(held.read_text(encoding="utf-8").splitlines(keepends=True)[:limit]), encoding="utf-8")
    return out


def every_15_s(say: Callable[[str], None]) -> Callable[[str, int, int], None]:
    """An eval progress callback that says "MODEL: done/total" at most every 15 s, and at each model's end."""
    last = [0.0]

    def progress(model_id: str, done: int, total: int) -> None:
        if done == total or time.monotonic() - last[0] > 15:
            last[0] = time.monotonic()
            say(f"{model_id}: {done}/{total}")

    return progress


def run_demo(workspace: Path, say: Callable[[str], None] = print, max_steps: int | None = None,
             heldout_limit: int | None = None, base_model: str | None = None, task: str = "reminders",
             bases_from: Path | None = None) -> dict:
    """Run the loop for `task` (a key of TASKS) in a fresh `workspace`, training on `base_model` (a base of the
    registry, demo_base; `bases_from`: the workspace whose added bases count too); the eval result
    (forge.eval.evaluate's dict) plus base (the base's id), run_id, model_id, workspace, task, minutes (all) and
    train_minutes (training alone), and markers: system → markers_kept (None for each when no held-out source has a
    marker)."""
    from forge import eval as ev
    from forge.models import export as ex

    if task == "voice":
        return run_voice_demo(workspace, say, max_steps, heldout_limit, base_model, bases_from)
    if task not in TASKS:
        raise DemoError(f"unknown demo task {task!r}: use one of {', '.join(TASKS)}, voice")
    spec_task = TASKS[task]
    base = demo_base(base_model, bases_from)  # before the workspace is wiped: an unknown base costs nothing
    t0 = time.perf_counter()
    ws = fresh_workspace(Path(workspace))
    keep_base(base, ws)
    config = spec_task.config(ws)
    store = Store.for_workspace(ws)
    curate(store, config, spec_task, ws / "exports" / "dataset", say)

    say(f"training on {base.id} ({base.name})…")
    run_id, run_dir, train_minutes = train(store, config, spec_task, ws / "exports" / "dataset", say, max_steps,
                                           base.id)
    quant = ex.merged_quant(config, store.get_run(run_id))  # the base's default: Q8_0 on Gemma, which ships at 4 bits
    say(f"exporting {quant.upper()}…")
    model = ex.export_run(store, config, run_id, quant, lambda stage, msg: say(f"[{stage}] {msg}"))
    held = first_rows(DEMO_DIR / spec_task.heldout_file, heldout_limit, ws / "exports" / "heldout.jsonl")
    say(f"evaluating tuned vs base ({base.id}) on held-out {spec_task.unit}…")
    result = ev.evaluate(store, model["model_id"], "base", test_file=str(held), max_tokens=spec_task.max_tokens,
                         progress=every_15_s(say), config=config)
    stored = ev.latest_pair(store, model["model_id"], result["baseline_id"], result["dataset"])
    if stored:
        prompts = [r["prompt"] for r in stored[0]["outputs"]]
        systems = {"tuned": stored[0]["outputs"], "base": stored[1]["outputs"]}
        result["markers"] = {name: markers_kept(prompts, ev.outputs_of(recs)) for name, recs in systems.items()}
        if result.get("lead"):
            result["markers"][result["lead"]["id"]] = markers_kept(prompts, result["lead"]["outputs"])
    result.update({"base": base.id, "run_id": run_id, "model_id": model["model_id"], "workspace": str(ws),
                   "task": task, "train_minutes": train_minutes,
                   "minutes": round((time.perf_counter() - t0) / 60, 1)})
    store.close()
    return result


def run_voice_demo(workspace: Path, say: Callable[[str], None] = print, max_steps: int | None = None,
                   heldout_limit: int | None = None, base_model: str | None = None,
                   bases_from: Path | None = None) -> dict:
    """Voice: a diary imported as a vault (all notes) → approve → a dataset that holds out whole notes → the voice
    recipe on `base_model` (a LoRA, exported as a GGUF adapter of that base: seconds, no merge; its decoding defaults
    travel in it) → Eval on the held-out notes against the base, with the voice judge. Returns forge.eval.evaluate's
    dict with base, run_id, model_id, workspace, task, minutes and train_minutes."""
    from forge import eval as ev
    from forge.data.dataset import export_dataset
    from forge.data.extract import run_extract
    from forge.models import export as ex
    from forge.train.recipes import recipe_spec

    base = demo_base(base_model, bases_from)
    t0 = time.perf_counter()
    ws = fresh_workspace(Path(workspace))
    keep_base(base, ws)
    from forge.train.recipes import RECIPES

    recipe = RECIPES["voice"]
    config = Config(workspace=str(ws), extract={"obsidian": {"max_tokens": recipe.note_tokens}})
    store = Store.for_workspace(ws)
    report = run_extract(store, "obsidian", VOICE_VAULT, config, all_notes=True)
    ids = store.ids(status="pending")
    store.decide("approve-all", {i: {"status": "approved"} for i in ids}, reason="forge demo")
    say(f"imported {report['read']} diary entries as {len(ids)} examples and approved them")
    dataset = ws / "exports" / "dataset"
    ds = export_dataset(store, dataset, config)
    say(f"dataset, whole notes held out: train {ds['train']}, val {ds['val']}, test {ds['test']} "
        f"({ds['notes']['test']} notes)")
    voice = recipe_spec("voice", base.id)  # the recipe as a new user gets it on this base
    task = DemoTask("", "", {**voice, **VOICE_SPEC}, "notes", voice["eval_max_tokens"])
    say(f"training on {base.id} ({base.name})…")
    run_id, _, train_minutes = train(store, config, task, dataset, say, max_steps, base.id)
    say("exporting the LoRA as a GGUF adapter…")
    model = ex.export_adapter(store, config, run_id, progress=lambda stage, msg: say(f"[{stage}] {msg}"))
    held = first_rows(dataset / "test.jsonl", heldout_limit, ws / "exports" / "heldout.jsonl")
    say(f"evaluating tuned vs base ({model['base_id']}) on the held-out entries, with the voice judge…")
    result = ev.evaluate(store, model["model_id"], "base", test_file=str(held), max_tokens=task.max_tokens,
                         progress=every_15_s(say), config=config, voice=True)
    result.update({"base": base.id, "run_id": run_id, "model_id": model["model_id"], "workspace": str(ws),
                   "task": "voice", "train_minutes": train_minutes,
                   "minutes": round((time.perf_counter() - t0) / 60, 1), "markers": None})
    store.close()
    return result


# ---- one base, two adapters, one companion ---------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Companion:
    """`forge serve` for the demo's workspace as a child process on a free loopback port, stopped on exit from the
    `with` block whatever happens (an error, Ctrl-C); it also stops by itself if this process dies
    (--exit-with-parent)."""

    def __init__(self, workspace: Path, model: str = "base", start_timeout_s: float = 300):
        import secrets

        self.workspace, self.model, self.start_timeout_s = Path(workspace), model, start_timeout_s
        self.token = secrets.token_urlsafe(24)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.workspace / "companion" / f"serve-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Companion":
        import json
        import sys

        import httpx

        from forge import child_env

        cfg = self.workspace / "companion" / "config.json"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(json.dumps({"workspace": str(self.workspace), "companion": {
            "host": "127.0.0.1", "port": self.port, "model": self.model, "request_timeout_s": 600,
            "queue_timeout_s": 900}}, indent=2) + "\n")
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "companion.cli", "--config", str(cfg), "serve", "--model", self.model,
                 "--host", "127.0.0.1", "--port", str(self.port), "--exit-with-parent"],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=child_env(FORGE_ADMIN_TOKEN=self.token))
        try:
            deadline = time.monotonic() + self.start_timeout_s
            while True:
                if self.proc.poll() is not None:
                    raise DemoError(f"the companion exited while starting: {self._last_line()} (log: {self.log})")
                try:
                    if httpx.get(f"{self.url}/health", timeout=5).json().get("status") == "healthy":
                        return self
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise DemoError(f"the companion did not come up in {self.start_timeout_s:.0f} s (log: {self.log})")
                time.sleep(0.3)
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def _last_line(self) -> str:
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()] \
            if self.log.exists() else []
        return lines[-1][-300:] if lines else f"exit status {self.proc.returncode if self.proc else '?'}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def admin(self, method: str, path: str, **kw):
        import httpx

        return httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}"},
                             timeout=300, **kw)

    def add_adapter(self, adapter_id: str) -> dict:
        r = self.admin("POST", "/admin/adapters", json={"adapter_id": adapter_id})
        if r.status_code != 200:
            raise DemoError(f"the companion refused adapter {adapter_id}: {r.text[:300]}")
        return r.json()

    def models(self) -> list[dict]:
        import httpx

        return httpx.get(f"{self.url}/v1/models", timeout=30).json()["data"]

    def ask_all(self, model: str, prompts: list[dict], max_tokens: int, timeout_s: float = 300,
                progress: Callable[[int, int], None] | None = None) -> list[dict]:
        """One record per prompt as forge.eval.generate_all makes them (output, error, latency_ms,
        completion_tokens, expected, prompt), from POST /v1/chat/completions with `model` (an adapter id picks the
        adapter), greedy; plus `model`: the registry id the companion says answered."""
        import httpx

        out = []
        with httpx.Client(base_url=self.url, timeout=timeout_s) as client:
            for i, p in enumerate(prompts):
                rec = {"output": "", "error": None, "latency_ms": None, "completion_tokens": 0, "model": None}
                t = time.perf_counter()
                try:
                    r = client.post("/v1/chat/completions", json={
                        "model": model, "messages": p["messages"], "max_tokens": max_tokens, "temperature": 0,
                        "seed": 0})
                    if r.status_code == 200:
                        body = r.json()
                        rec.update(output=(body["choices"][0]["message"]["content"] or "").strip(),
                                   latency_ms=round((time.perf_counter() - t) * 1000, 1), model=body.get("model"),
                                   completion_tokens=(body.get("usage") or {}).get("completion_tokens", 0))
                    else:
                        rec["error"] = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    rec["error"] = f"{type(e).__name__}: {e}"[:300]
                out.append(dict(rec, expected=p["expected"], prompt=p["messages"][-1]["content"]))
                if progress:
                    progress(i + 1, len(prompts))
        return out


def intent_accuracy(records: list[dict]) -> float | None:
    """Share of answers whose `intent` is the expected one (the field the knowledge-graph team calls intent
    accuracy); None when the expected answers are not JSON objects with an intent."""
    import json

    def intent(text: str):
        try:
            value = json.loads(text or "")
        except (json.JSONDecodeError, TypeError):
            return None
        return value.get("intent") if isinstance(value, dict) else None

    expected = [intent(r["expected"]) for r in records]
    if not records or any(e is None for e in expected):
        return None
    return sum(intent(r["output"]) == e for r, e in zip(records, expected)) / len(records)


def heldout_for(ws: Path, spec_task: DemoTask, limit: int | None) -> Path:
    """The task's committed held-out file, or its first `limit` lines under the same name in the workspace."""
    return first_rows(DEMO_DIR / spec_task.heldout_file, limit, ws / "exports" / spec_task.heldout_file)


def evaluate_through(companion: Companion, store: Store, config: Config, task: str, adapter_id: str,
                     held: Path, say: Callable[[str], None], timeout_s: float = 300, base_id: str = "base") -> dict:
    """The task's held-out prompts asked of its adapter and of the base (`base_id`, the model the companion serves)
    through the running companion; metrics as
    forge eval computes them (forge.eval.summarize) and adapter − base with paired bootstrap 95 % intervals
    (forge.eval.compare_records). Prompts with a near-duplicate in the adapter's training data are excluded, as
    forge eval does. Both sides are stored as evals (the Eval screen shows them)."""
    from forge import eval as ev

    spec_task = TASKS[task]
    prompts, _ = ev.load_prompts(held, config=config)
    leaks = ev.check_leaks(store, config, [adapter_id], prompts)
    leaks["kept"], leaks["excluded"] = False, leaks["found"]
    if leaks["found"]:
        leaked = {it["index"] for it in leaks["items"]}
        if len(leaked) == len(prompts):
            raise DemoError(f"{held.name}: every held-out prompt has a near-duplicate in {task}'s training data")
        prompts = [p for i, p in enumerate(prompts) if i not in leaked]
    max_tokens, counted_by = spec_task.max_tokens, "demo task"
    if max_tokens == "auto":
        count, counted_by = ev.token_counter_for(config)
        max_tokens = ev.auto_max_tokens([p["expected"] for p in prompts], count)
    dataset = ev.dataset_id(held.name, prompts)
    info = {"max_tokens": max_tokens, "max_tokens_from": counted_by, "baselines": "none", "via": companion.url,
            "leaks": {k: v for k, v in leaks.items() if k != "items"}}
    records, metrics = {}, {}
    for role, model in (("adapter", adapter_id), ("base", base_id)):
        last = [0.0]

        def progress(done: int, total: int, model=model) -> None:
            if done == total or time.monotonic() - last[0] > 15:
                last[0] = time.monotonic()
                say(f"[{task}] {model}: {done}/{total}")

        records[role] = companion.ask_all(model, prompts, max_tokens, timeout_s, progress)
        metrics[role] = {**ev.summarize(records[role]), "intent_accuracy": intent_accuracy(records[role])}
        store.save_eval(model, dataset, {**metrics[role], "eval": info}, records[role])
    c = ev.compare_records(records["adapter"], records["base"], "base", baselines="none")
    return {"task": task, "adapter_id": adapter_id, "heldout_file": held.name, "dataset": dataset,
            "n": len(prompts), "max_tokens": max_tokens, "adapter": metrics["adapter"], "base": metrics["base"],
            "comparison": c["vs"].get("base", {}), "headline": c["headline"],
            "summary": [s.replace("tuned", adapter_id, 1) for s in c["sentences"]]
            + ev.notes(leaks, None, len(prompts)),
            "answered_by": {role: sorted({r["model"] for r in recs if r["model"]}) for role, recs in records.items()},
            "leaks": info["leaks"]}


def run_adapters_demo(workspace: Path, say: Callable[[str], None] = print, max_steps: int | None = None,
                      heldout_limit: int | None = None, base_model: str | None = None,
                      tasks: tuple[str, ...] = ADAPTER_TASKS, timeout_s: float = 300,
                      bases_from: Path | None = None) -> dict:
    """`forge demo --adapters`, in a fresh `workspace`: each task curated (its own store under tasks/<task>/, so
    each run trains on its task alone), trained as its own LoRA run on the same base and exported as a GGUF
    adapter into the workspace's registry; then ONE companion serving `base` with every adapter loaded, and each
    task's held-out file asked of its adapter and of the base through it. The companion is stopped before this
    returns or raises.

    Returns {workspace, base, tasks: {task: evaluate_through's dict + run_id, train_minutes, export_s},
    companion: {url, pid, log, models (GET /v1/models), adapters_loaded, stopped}, minutes}."""
    from forge.models import export as ex

    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise DemoError(f"unknown demo task {unknown[0] if unknown else None!r}: use some of {', '.join(TASKS)}")
    trains_on = demo_base(base_model, bases_from)
    t0 = time.perf_counter()
    ws = fresh_workspace(Path(workspace))
    keep_base(trains_on, ws)
    config = Config(workspace=str(ws))
    store = Store.for_workspace(ws)
    try:
        base = ex.register_base(store, config, trains_on.id, say) if trains_on.source_kind != "folder" else None
        trained: dict[str, dict] = {}
        for task in tasks:
            spec_task, prefix = TASKS[task], f"[{task}] "
            sub = ws / "tasks" / task
            sub_store = Store.for_workspace(sub)
            try:
                curate(sub_store, spec_task.config(sub), spec_task, sub / "dataset", say, prefix)
            finally:
                sub_store.close()
            run_id, _, minutes = train(store, config, spec_task, sub / "dataset", say, max_steps, trains_on.id,
                                       prefix)
            say(f"{prefix}exporting the LoRA adapter (no merge)…")
            t = time.perf_counter()
            adapter = ex.export_adapter(store, config, run_id, None,
                                        lambda stage, msg, p=prefix: say(f"{p}[{stage}] {msg}"))
            base = base or store.get_model(adapter["base_id"])
            if adapter["base_id"] != base["id"]:
                raise DemoError(f"{task}'s adapter is for {adapter['base_id']}, not {base['id']}: the adapters demo "
                                "trains every task on one base")
            trained[task] = {"run_id": run_id, "adapter_id": adapter["model_id"], "train_minutes": minutes,
                             "export_s": round(time.perf_counter() - t, 1)}
            say(f"{prefix}adapter {adapter['model_id']} ({adapter['bytes'] / 1e6:.1f} MB) in "
                f"{trained[task]['export_s']} s")
        say(f"starting one companion serving {base['id']} with {len(tasks)} adapters…")
        with Companion(ws, base["id"]) as companion:
            loaded = []
            for task in tasks:
                loaded = companion.add_adapter(trained[task]["adapter_id"])["loaded"]
            listed = companion.models()
            say(f"companion at {companion.url} (pid {companion.proc.pid}): {base['id']} with {', '.join(loaded)}")
            results = {}
            for task in tasks:
                say(f"[{task}] asking {trained[task]['adapter_id']} and {base['id']} the held-out "
                    f"{TASKS[task].unit}…")
                held = heldout_for(ws, TASKS[task], heldout_limit)
                results[task] = {**evaluate_through(companion, store, TASKS[task].config(ws), task,
                                                    trained[task]["adapter_id"], held, say, timeout_s, base["id"]),
                                 **trained[task]}
            info = {"url": companion.url, "pid": companion.proc.pid, "log": str(companion.log),
                    "adapters_loaded": loaded,
                    "models": [{k: m.get(k) for k in ("id", "kind", "parent", "loaded")} for m in listed]}
        info["stopped"] = companion.proc.poll() is not None
        return {"workspace": str(ws), "base": base["id"], "tasks": results, "companion": info,
                "minutes": round((time.perf_counter() - t0) / 60, 1)}
    finally:
        store.close()
