"""Gemma 3 270M, made once for test_gemma_base.py and test_gemma_loop.py: a workspace with Gemma materialised, one
finished 2-step run on it, its LoRA exported as a GGUF adapter, and the run merged to Q8_0.

Once per test session, not once per file: scripts/test runs two pytest-xdist workers that take a file each, so the
two Gemma files may run at the same time in different processes. The workspace lies in the temp root all workers
share; each stage runs under a file lock and writes its result (JSON) last, so a worker that comes second waits for
the first and reuses what it made instead of dequantising Gemma and training again on the other core."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

PAIRS = [("remind me to call mum at 6", "call mum | 6pm"), ("water the plants tomorrow", "water the plants | tomorrow"),
         ("ping me about the dentist on friday", "dentist | friday"), ("pay rent on the 1st", "pay rent | the 1st"),
         ("book the car service next week", "book the car service | next week"),
         ("text sam at noon", "text sam | noon")]
SYSTEM = "Turn the request into task | when."


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _once(root: Path, name: str, make) -> dict:
    """make() the first time any worker of this session asks for `name`, its stored result after that."""
    done = root / f"{name}.json"
    with _locked(root / f"{name}.lock"):
        if done.exists():
            return json.loads(done.read_text())
        value = make()
        tmp = done.with_suffix(".partial")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, done)
        return value


def _watch_peak_rss(pid: int, done: threading.Event, measured: dict) -> None:
    """The runner's own peak RSS (VmHWM of its process, read until it exits: model load + the training steps).
    getrusage(RUSAGE_CHILDREN) would not do: Linux carries a parent's high-water mark into a child across exec."""
    while not done.is_set():
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    measured["runner_peak_rss_mb"] = int(line.split()[1]) / 1024
        except OSError:
            return
        done.wait(0.2)


@pytest.fixture(scope="session")
def gemma_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-USER/pytest-N: the one basetemp the workers' own folders live in
    return root / "shared-gemma"


@pytest.fixture(scope="session")
def gemma_measured() -> dict:
    """What the fixtures measured: runner_peak_rss_mb, merged_export_s (absent where not measured)."""
    return {}


@pytest.fixture(scope="session")
def gemma_run(gemma_root, gemma_measured):
    """A workspace with Gemma materialised and registered, and one finished 2-step run on it: (store, config,
    run_id, run_dir, progress lines of the materialisation)."""
    from forge.config import Config
    from forge.models import bases
    from forge.models.base_model import resolve_base
    from forge.models.export import register_base, register_bundled_base
    from forge.store import Store
    from forge.train import runs
    from forge.train.spec import TrainSpec

    ws = gemma_root / "ws"
    config = Config(workspace=str(ws))

    def make() -> dict:
        store = Store.for_workspace(ws)
        said: list[str] = []
        resolve_base(bases.GEMMA3_270M, ws, said.append)
        store.ingest([{"extract_key": f"k{i}", "source_kind": "jsonl", "source_ref": "x", "tags": [],
                       "messages": [{"role": "system", "content": SYSTEM},
                                    {"role": "user", "content": u}, {"role": "assistant", "content": a}]}
                      for i, (u, a) in enumerate(PAIRS)])
        for i in store.ids():
            store.set_status(i, "approved")
        spec = TrainSpec(base_model=bases.GEMMA3_270M, max_steps=2, batch_size=2, max_seq_len=64, lora_r=8,
                         forgetting_check=False)
        run_id, run_dir = runs.create_run(store, config, spec)
        proc = runs.launch(run_dir)
        done, measured = threading.Event(), {}
        watcher = threading.Thread(target=_watch_peak_rss, args=(proc.pid, done, measured), daemon=True)
        watcher.start()
        runs.wait(proc, run_dir)
        done.set()
        watcher.join()
        final = runs.finalize(store, run_id, run_dir, proc.returncode)
        assert final["status"] == "completed", final
        # registered here, once: two workers registering the same id at the same moment would collide
        register_base(store, config, bases.GEMMA3_270M)
        register_bundled_base(store, config)
        store.close()
        return {"run_id": run_id, "run_dir": str(run_dir), "said": said, **measured}

    made = _once(gemma_root, "run", make)
    if "runner_peak_rss_mb" in made:
        gemma_measured["runner_peak_rss_mb"] = made["runner_peak_rss_mb"]
    store = Store.for_workspace(ws)
    yield store, config, made["run_id"], Path(made["run_dir"]), made["said"]
    store.close()


@pytest.fixture(scope="session")
def gemma_adapter(gemma_root, gemma_run) -> dict:
    """The run's LoRA exported as a llama.cpp GGUF adapter of the registered Gemma GGUF (export_adapter's dict)."""
    from forge.models.export import export_adapter

    store, config, run_id, _, _ = gemma_run
    return _once(gemma_root, "adapter", lambda: export_adapter(store, config, run_id))


@pytest.fixture(scope="session")
def gemma_merged(gemma_root, gemma_run, gemma_measured) -> dict:
    """The run exported merged to Q8_0 (forge export RUN --quant q8_0: export_run's dict)."""
    from forge.models.export import export_run

    store, config, run_id, _, _ = gemma_run

    def make() -> dict:
        t0 = time.perf_counter()
        result = export_run(store, config, run_id, quant="q8_0")
        return {**result, "seconds": time.perf_counter() - t0}

    made = _once(gemma_root, "merged", make)
    gemma_measured["merged_export_s"] = made["seconds"]
    return made
