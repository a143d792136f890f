from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _pin_xdist_worker() -> None:
    """scripts/test runs the suite in pytest-xdist workers (one per core by default). Each worker and every process
    it starts (training runners, llama.cpp children, companions) keeps to its own share of the cores: torch and
    forge's llama.cpp thread counts follow the affinity mask, so two workers never run four spinning threads on
    two cores, which slows both ten-fold."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus = sorted(os.sched_getaffinity(0))
    share = len(cpus) // count
    if share:
        i = int(worker[2:]) % count
        os.sched_setaffinity(0, cpus[i * share:(i + 1) * share])


_pin_xdist_worker()

# The test files that take longest (pytest --durations on this 2-core machine), longest first. scripts/test hands
# whole files to its two workers in collection order (--dist loadfile --no-loadscope-reorder); starting with these
# lets the many short files fill in behind them, so both workers finish together rather than one waiting out a
# two-minute file handed over last.
LONGEST_FIRST = ["tests/forge/test_demo_adapters.py", "tests/forge/test_demo.py", "tests/forge/eval/test_eval.py",
                 "tests/forge/train/test_distributed.py", "tests/forge/models/test_export.py",
                 "tests/forge/train/test_train.py", "tests/forge/models/test_export_adapter.py",
                 "tests/forge/train/test_lengths.py", "tests/forge/train/test_preference_train.py"]


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VAULT = REPO / "data" / "sample_vault"


@pytest.fixture
def config(tmp_path):
    from forge.config import Config

    return Config(workspace=str(tmp_path / "ws"))


@pytest.fixture
def store(config):
    from forge.store import Store

    s = Store.for_workspace(config.workspace_path())
    yield s
    s.close()


@pytest.fixture
def sample_store(store, config):
    from forge.data.extract import run_extract

    run_extract(store, "obsidian", SAMPLE_VAULT, config)
    return store


@pytest.fixture(scope="session")
def base_model_dir(tmp_path_factory):
    """The bundled SmolLM2-135M materialised once per test session (~35 s), shared by every real-model test.

    With pytest-xdist (scripts/test runs two workers) the folder sits in the temp root all workers share; the file
    lock in materialise lets one worker write it while the other waits, so it is made once, not once per worker."""
    from forge.models.base_model import materialise

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-of-USER/pytest-N: the one basetemp the workers' own folders live in
    return materialise(root / "shared-base-hf")


REMINDER_PAIRS = [("remind me to call mom tomorrow at 5", "call mom | tomorrow at 5"),
                  ("dont let me forget the dentist on friday", "dentist | friday"),
                  ("ping me to water the plants tonight", "water the plants | tonight"),
                  ("i need to pay rent on the 1st", "pay rent | the 1st")]


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory, base_model_dir):
    """A workspace with approved examples and one finished 2-step run: (store, config, run_id, run_dir)."""
    from forge.config import Config
    from forge.store import Store
    from forge.train import runs
    from forge.train.spec import TrainSpec

    ws = tmp_path_factory.mktemp("trained-ws")
    config = Config(workspace=str(ws))
    store = Store.for_workspace(ws)
    store.ingest([{"extract_key": f"k{i}", "source_kind": "jsonl", "source_ref": "x", "tags": [],
                   "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
                  for i, (u, a) in enumerate(REMINDER_PAIRS)])
    for i in store.ids():
        store.set_status(i, "approved")
    spec = TrainSpec(base_model=str(base_model_dir), max_steps=2, batch_size=4, max_seq_len=64, lora_r=8,
                     target_modules=["q_proj", "v_proj"],
                     forgetting_check=False)  # tests/forge/train/test_lengths.py runs it
    run_id, run_dir = runs.create_run(store, config, spec)
    proc = runs.launch(run_dir)
    runs.wait(proc, run_dir)
    final = runs.finalize(store, run_id, run_dir, proc.returncode)
    assert final["status"] == "completed", final
    return store, config, run_id, run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_model(store, config, model_id: str, path: Path, quant: str) -> None:
    from forge.store import sha256_file

    store.register_model({"id": model_id, "name": model_id, "path": str(path), "quant": quant,
                          "bytes": path.stat().st_size, "sha256": sha256_file(path), "run_id": None,
                          "status": "ready", "meta": {}}, models_dir=config.workspace_path() / "models")


def workspace_with_base(ws: Path, settings: dict):
    """Workspace folder `ws` with a config.json (`settings` beside its `workspace` key) and the bundled base
    registered as `base`: (config path, config, store, base record). The caller closes the store."""
    from forge.config import load_config
    from forge.models.export import register_bundled_base
    from forge.store import Store

    cfg_path = ws / "config.json"
    cfg_path.write_text(json.dumps({"workspace": str(ws), **settings}))
    config = load_config(cfg_path, environ={})
    store = Store.for_workspace(ws)
    return cfg_path, config, store, register_bundled_base(store, config)


@pytest.fixture(scope="session")
def companion_ws(tmp_path_factory):
    from forge.models.llama_child import run_child

    ws = tmp_path_factory.mktemp("companion-ws")
    cfg_path, config, store, base = workspace_with_base(ws, {
        "companion": {"max_queue": 6, "request_timeout_s": 120, "drain_timeout_s": 120, "n_ctx": 1024},
        "generate": {"max_tokens": 300, "concurrency": 1, "per_request": 2, "max_requests": 12, "timeout_s": 120}})
    alt = ws / "models" / "alt" / "smollm2-q8_0.gguf"
    alt.parent.mkdir(parents=True)
    run_child("quantize", src=base["path"], dst=str(alt), quant="q8_0", allow_requantize=True)
    add_model(store, config, "alt", alt, "q8_0")
    store.close()
    return cfg_path, ws
