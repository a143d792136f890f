"""One base + many LoRA adapters vs one merged model per task, measured in one run (issue 15):

1. export time: `forge export RUN --adapter` vs the merged `forge export RUN` (Q4_K_M) of the same run. Goal ≤ 0.1×.
2. memory: resident memory of one llama.cpp process holding the base (Q4_K_M) + 5 adapters vs 5 processes each
   holding one merged Q4_K_M model (and the same for the files on disk). Goal ≤ 0.3×.
3. switching: bare llama-cpp-python with the companion worker's adapter switcher (llama_set_adapters_lora + KV
   cache cleared), consecutive requests alternating two adapters vs staying on one; the added latency, and the
   switch itself. Goal p99 added < 20 ms on CPU.
4. hot-add over HTTP: POST /admin/adapters on a running companion (goal < 1 s), and failed requests while
   adapters are added and removed under load from two clients (goal 0).

Usage: .venv/bin/python -m benchmarks.bench_adapters [--requests N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from benchmarks.bench_export import trained_run
from benchmarks.common import percentiles
from forge.config import REPO_ROOT
from forge.models import export as ex
from forge.models.base_model import materialise
from forge.models.llama_child import run_child

THREADS = 2
TOKEN = "bench-token"
PROMPTS = ["remind me to call mom tomorrow at 5", "dont let me forget the dentist on friday",
           "ping me to water the plants tonight", "i need to pay rent on the 1st", "remind me to buy milk on monday",
           "dont let me forget the gym tonight", "ping me to email bob at noon", "remind me to stretch at 3pm"]

RSS = r"""
import json, os, sys
from forge.models.llama_child import load_llama
from companion.worker import Adapters
model, adapters = sys.argv[1], json.loads(sys.argv[2])
llm = load_llama(model, n_ctx=1024, n_threads=2, seed=0)
a = Adapters(llm)
for i, p in enumerate(adapters):
    a.add(f"a{i}", p)
for i in list(range(len(adapters))) or [None]:  # touch every adapter's weights once
    a.apply(None if i is None else f"a{i}")
    llm.create_chat_completion([{"role": "user", "content": "hello"}], max_tokens=2, temperature=0)
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
print(json.dumps({"rss_kb": rss}))
"""

SWITCH = r"""
import json, sys, time
from forge.models.llama_child import load_llama
from companion.worker import Adapters
model, adapters, prompts, n = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
llm = load_llama(model, n_ctx=1024, n_threads=2, seed=0)
a = Adapters(llm)
t = time.perf_counter(); a.add("a", adapters[0]); add_ms = (time.perf_counter() - t) * 1000
a.add("b", adapters[1])
out = {"add_ms": add_ms}
for mode in ("stay", "alternate", "stay", "alternate"):  # twice each, interleaved: the machine's drift hits both
    for i in range(n):
        name = "a" if mode == "stay" or i % 2 == 0 else "b"
        t0 = time.perf_counter()
        a.apply(name)
        t1 = time.perf_counter()
        llm.create_chat_completion([{"role": "user", "content": prompts[i % len(prompts)]}], max_tokens=8,
                                   temperature=0)
        t2 = time.perf_counter()
        out.setdefault(mode, []).append((t2 - t0, t1 - t0))
print(json.dumps(out))
"""


def child(script: str, *args: str) -> dict:
    p = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=REPO_ROOT,
                       timeout=1800)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def adapters_from(run_dir: Path, base_dir: Path, out: Path, n: int) -> list[Path]:
    """n distinct adapters of the same shape: the run's LoRA at n different alphas (convert_adapter)."""
    from forge.models.lora_gguf import convert_adapter

    paths = []
    for i in range(n):
        peft = out / f"peft-{i}"
        shutil.copytree(run_dir / "adapter", peft)
        cfg = json.loads((peft / "adapter_config.json").read_text())
        (peft / "adapter_config.json").write_text(json.dumps({**cfg, "lora_alpha": cfg["lora_alpha"] * (i + 1)}))
        paths.append(out / f"adapter-{i}.gguf")
        convert_adapter(peft, base_dir, paths[-1], {"forge.base_model_id": "bench-base"}, f"a{i}")
    return paths


def hot_add_under_load(ws: Path, store, config, adapter: dict, extra: Path, rounds: int) -> dict:
    from forge.store import sha256_file
    from tests.conftest import free_port

    for adapter_id, src in (("bench-a", Path(adapter["path"])), ("bench-b", extra)):
        dst = config.workspace_path() / "models" / adapter_id / f"{adapter_id}.gguf"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        store.register_model({"id": adapter_id, "name": adapter_id, "path": str(dst), "quant": "f32",
                              "bytes": dst.stat().st_size, "sha256": sha256_file(dst), "status": "ready",
                              "meta": {**adapter["meta"], "base_id": "base"}},
                             models_dir=config.workspace_path() / "models")
    cfg = ws / "config.json"
    cfg.write_text(json.dumps({"workspace": str(ws), "companion": {"n_threads": THREADS, "n_ctx": 1024,
                                                                    "max_queue": 64}}))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "companion.cli", "--config", str(cfg), "serve", "--port",
                             str(port), "--model", "base"], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "FORGE_ADMIN_TOKEN": TOKEN})
    admin = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for _ in range(900):
            try:
                if httpx.get(f"{url}/health", timeout=1).json()["status"] == "healthy":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert httpx.post(f"{url}/admin/adapters", json={"adapter_id": "bench-a"}, headers=admin,
                          timeout=120).status_code == 200
        requests, failures, stop = [], [], threading.Event()

        def client(model: str) -> None:
            with httpx.Client(timeout=300) as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    r = c.post(f"{url}/v1/chat/completions", json={
                        "model": model, "max_tokens": 8, "temperature": 0,
                        "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]})
                    (requests if r.status_code == 200 else failures).append(f"{model} {r.status_code} {r.text[:80]}")

        threads = [threading.Thread(target=client, args=(m,)) for m in ("base", "bench-a")]
        for t in threads:
            t.start()
        add_wall, add_ms = [], []
        for _ in range(rounds):
            time.sleep(1)
            t = time.perf_counter()
            r = httpx.post(f"{url}/admin/adapters", json={"adapter_id": "bench-b"}, headers=admin, timeout=300)
            add_wall.append(time.perf_counter() - t)
            if r.status_code != 200:
                failures.append(f"add {r.status_code} {r.text[:80]}")
            else:
                add_ms.append(r.json()["load_ms"])
            r = httpx.delete(f"{url}/admin/adapters/bench-b", headers=admin, timeout=300)
            if r.status_code != 200:
                failures.append(f"remove {r.status_code} {r.text[:80]}")
        stop.set()
        for t in threads:
            t.join()
        idle_t = time.perf_counter()
        httpx.post(f"{url}/admin/adapters", json={"adapter_id": "bench-b"}, headers=admin, timeout=300)
        idle = time.perf_counter() - idle_t
        return {"requests": len(requests), "failures": failures, "add_wall_s_under_load": add_wall,
                "add_ms_in_worker": add_ms, "add_wall_s_idle": idle}
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=24, help="requests per switching round")
    ap.add_argument("--load-rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="forge-bench-adapters-"))
    base_dir = materialise(Path(tempfile.gettempdir()) / "forge-bench-base-hf", print)
    store, config, run_id, run_dir = trained_run(tmp / "ws", base_dir)
    import peft  # noqa: F401 - imports paid before either timing, so neither pays them
    import transformers  # noqa: F401

    t = time.perf_counter()
    merged = ex.export_run(store, config, run_id, "q4_k_m")
    t_merged = time.perf_counter() - t
    t = time.perf_counter()
    adapter = ex.export_adapter(store, config, run_id)
    t_adapter = time.perf_counter() - t
    print(f"1. export: adapter {t_adapter:.1f} s vs merged Q4_K_M {t_merged:.1f} s = {t_adapter / t_merged:.3f}× "
          f"(goal ≤ 0.1); adapter stages {adapter['timings']}", flush=True)

    base_q4km = tmp / "base-q4_k_m.gguf"
    run_child("quantize", src=store.get_model("base")["path"], dst=str(base_q4km), quant="q4_k_m",
              allow_requantize=True)
    five = adapters_from(run_dir, base_dir, tmp, 5)
    with_adapters = child(RSS, str(base_q4km), json.dumps([str(p) for p in five]))["rss_kb"]
    one_merged = child(RSS, merged["path"], "[]")["rss_kb"]
    disk_adapters = base_q4km.stat().st_size + sum(p.stat().st_size for p in five)
    disk_merged = 5 * Path(merged["path"]).stat().st_size
    print(f"2. memory: base + 5 adapters {with_adapters / 1024:.0f} MiB RSS vs 5 merged "
          f"{5 * one_merged / 1024:.0f} MiB = {with_adapters / (5 * one_merged):.2f}× (goal ≤ 0.3); on disk "
          f"{disk_adapters / 1e6:.0f} MB vs {disk_merged / 1e6:.0f} MB = {disk_adapters / disk_merged:.2f}×; one "
          f"adapter {five[0].stat().st_size / 1e6:.2f} MB", flush=True)

    sw = child(SWITCH, str(base_q4km), json.dumps([str(p) for p in five[:2]]), json.dumps(PROMPTS),
               str(args.requests))
    stay = [s for s, _ in sw["stay"]]
    alt = [s for s, _ in sw["alternate"]]
    switch = [a for _, a in sw["alternate"]]
    (s50, s99), (a50, a99), (w50, w99) = percentiles(stay), percentiles(alt), percentiles(switch)
    print(f"3. switching ({len(stay)} requests each, 8 tokens, {THREADS} threads): stay p50 {s50 * 1000:.0f} ms "
          f"p99 {s99 * 1000:.0f} ms; alternate p50 {a50 * 1000:.0f} ms p99 {a99 * 1000:.0f} ms; added p50 "
          f"{(a50 - s50) * 1000:+.1f} ms p99 {(a99 - s99) * 1000:+.1f} ms (goal p99 < 20 ms); the switch itself "
          f"p50 {w50 * 1000:.2f} ms p99 {w99 * 1000:.2f} ms; llama_adapter_lora_init {sw['add_ms']:.1f} ms",
          flush=True)

    load = hot_add_under_load(tmp / "ws", store, config, store.get_model(adapter["model_id"]), five[1],
                              args.load_rounds)
    print(f"4. hot-add over HTTP: idle {load['add_wall_s_idle']:.2f} s; under load (2 clients) "
          f"{', '.join(f'{s:.2f}' for s in load['add_wall_s_under_load'])} s wall "
          f"(in the worker {', '.join(f'{ms:.0f}' for ms in load['add_ms_in_worker'])} ms; the rest is waiting for "
          f"the running request) (goal < 1 s); {load['requests']} requests, {len(load['failures'])} failed "
          f"{load['failures'][:3]} (goal 0)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
