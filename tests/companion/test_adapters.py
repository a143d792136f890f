"""One base, many LoRA adapters: a real `forge serve` with the bundled SmolLM2 loads GGUF adapters exported by
`forge export --adapter` without reloading the base, applies the one a request's `model` names, lists them under
their base, adds and removes them under load, and carries them through a blue/green swap (or refuses them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.companion.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "remind me to call mom tomorrow at 5"}]


def register_adapter(store, config, adapter_id: str, src: Path, meta: dict) -> None:
    from forge.store import sha256_file

    dst = config.workspace_path() / "models" / adapter_id / f"{adapter_id}.gguf"
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    store.register_model({"id": adapter_id, "name": adapter_id, "path": str(dst), "quant": "f32",
                          "bytes": dst.stat().st_size, "sha256": sha256_file(dst), "run_id": None, "status": "ready",
                          "meta": meta}, models_dir=config.workspace_path() / "models")


def session_adapter(trained_workspace) -> dict:
    """The registry record of the session run's LoRA exported as a GGUF adapter (exported by the first caller)."""
    from forge.models import export as ex

    t_store, t_config, run_id, _ = trained_workspace
    adapter = next((m for m in t_store.models() if ex.is_adapter(m)), None)
    return adapter or t_store.get_model(ex.export_adapter(t_store, t_config, run_id)["model_id"])


def sampled_adapter(run_dir: Path, ws: Path) -> Path:
    """The run's LoRA as a GGUF adapter that carries decoding defaults (forge.decoding), as `forge export` writes
    them from a run whose spec sets `decoding`: hot sampling with a fixed seed."""
    from forge.models.lora_gguf import convert_adapter

    base_dir = json.loads((run_dir / "adapter" / "forge_adapter.json").read_text())["base_path"]
    convert_adapter(run_dir / "adapter", Path(base_dir), ws / "sampled.gguf", {
        "forge.base_model_id": "base", "forge.decoding": json.dumps({"temperature": 2.0, "top_k": 0, "seed": 11})},
        "sampled")
    return ws / "sampled.gguf"


def loud_adapter(run_dir: Path, ws: Path) -> Path:
    """The run's LoRA with alpha ×200 as a GGUF adapter in `ws`: its effect on greedy text is certain, where a
    2-step LoRA may change no token."""
    from forge.models.lora_gguf import convert_adapter

    loud_dir = ws / "loud-peft"
    shutil.copytree(run_dir / "adapter", loud_dir)
    cfg = json.loads((loud_dir / "adapter_config.json").read_text())
    (loud_dir / "adapter_config.json").write_text(json.dumps({**cfg, "lora_alpha": cfg["lora_alpha"] * 200}))
    base_dir = json.loads((run_dir / "adapter" / "forge_adapter.json").read_text())["base_path"]
    convert_adapter(loud_dir, Path(base_dir), ws / "loud.gguf", {"forge.base_model_id": "base"}, "loud")
    return ws / "loud.gguf"


@pytest.fixture(scope="module")
def served(trained_workspace, companion_ws, tmp_path_factory):
    """A companion serving `base` with, in its registry: `tuned` (the run's adapter), `loud` (the same LoRA with
    alpha ×200, so its effect on greedy text is certain), `alien` (an adapter of another base), `alt` (another
    base GGUF: the same model at Q8_0) and `base-copy` (the very same file as base under another id)."""
    from tests.conftest import add_model, workspace_with_base

    run_dir = trained_workspace[3]
    adapter = session_adapter(trained_workspace)
    ws = tmp_path_factory.mktemp("adapters-ws")
    cfg_path, config, store, base = workspace_with_base(ws, {"companion": {
        "max_queue": 16, "queue_timeout_s": 900, "request_timeout_s": 600, "drain_timeout_s": 600, "n_ctx": 1024}})
    for model_id, src in (("alt", Path(companion_ws[1]) / "models" / "alt" / "smollm2-q8_0.gguf"),
                          ("base-copy", Path(base["path"]))):
        dst = ws / "models" / model_id / src.name
        dst.parent.mkdir(parents=True)
        shutil.copyfile(src, dst)
        add_model(store, config, model_id, dst, "q8_0" if model_id == "alt" else "q4_1")
    register_adapter(store, config, "tuned", Path(adapter["path"]), adapter["meta"])
    register_adapter(store, config, "loud", loud_adapter(run_dir, ws), {**adapter["meta"], "provenance": {
        **adapter["meta"]["provenance"], "forge.run_id": "loud"}})
    register_adapter(store, config, "sampled", sampled_adapter(run_dir, ws), adapter["meta"])
    register_adapter(store, config, "alien", Path(adapter["path"]), {"kind": "adapter", "base_id": "some-8b",
                                                                       "provenance": {"forge.base_sha256": "0" * 64}})
    store.close()
    c = start_server(cfg_path, ws)
    yield c
    stop_server(c)


@pytest.fixture(autouse=True)
def nothing_attached_after(request):
    """Every test attaches the adapters it needs; whatever one left attached (a failure before its DELETE) is
    detached after it, so the next test's expectations do not fail with it."""
    yield
    if "served" in request.fixturenames:
        served = request.getfixturevalue("served")
        for adapter_id in ("tuned", "loud", "sampled"):
            served.admin("DELETE", f"/admin/adapters/{adapter_id}")  # 404 when it is not attached


def chat(c, model: str, stream: bool = False, **kw) -> httpx.Response:
    body = {"model": model, "messages": ASK, "max_tokens": 12, "temperature": 0, "stream": stream, **kw}
    if not stream:
        return httpx.post(f"{c.url}/v1/chat/completions", json=body, timeout=600)
    with httpx.stream("POST", f"{c.url}/v1/chat/completions", json=body, timeout=600) as r:
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in r.iter_lines() if line.startswith("data: {") and '"choices": [{' in line)
    return text


def text(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_a_request_picks_its_adapter_and_the_listing_shows_adapters_under_their_base(served):
    listed = {m["id"]: m for m in httpx.get(f"{served.url}/v1/models", timeout=30).json()["data"]}
    assert listed["tuned"]["kind"] == "adapter" and listed["tuned"]["parent"] == "base"
    assert listed["tuned"]["loaded"] is False and listed["tuned"]["provenance"]["forge.base_model_id"] == "base"
    assert listed["base"]["kind"] == "model" and listed["base"]["loaded"] is True

    on_demand = chat(served, "loud")  # registered, not loaded: loaded on demand, never the base's answer silently
    assert on_demand.status_code == 200 and on_demand.json()["model"] == "loud", on_demand.text
    assert served.admin("DELETE", "/admin/adapters/loud").status_code == 200

    plain = text(chat(served, "base"))
    added = served.admin("POST", "/admin/adapters", json={"adapter_id": "loud"})
    assert added.status_code == 200, added.text
    assert added.json()["base"] == "base" and "loud" in added.json()["loaded"]
    assert {m["id"]: m["loaded"] for m in httpx.get(f"{served.url}/v1/models").json()["data"]}["loud"] is True

    r = chat(served, "loud")
    loud = text(r)
    assert r.json()["model"] == "loud" and loud != plain
    assert text(chat(served, "base")) == plain  # switching back clears the KV cache: nothing of loud remains
    assert text(chat(served, "loud")) == loud and chat(served, "loud", stream=True) == loud
    assert text(chat(served, "gpt-4o")) == plain  # any other name: the base, as before adapters

    alien = served.admin("POST", "/admin/adapters", json={"adapter_id": "alien"})
    assert alien.status_code == 422 and "made for base 'some-8b'" in alien.json()["error"]["message"]
    not_adapter = served.admin("POST", "/admin/adapters", json={"adapter_id": "alt"})
    assert not_adapter.status_code == 422 and not_adapter.json()["error"]["type"] == "not_an_adapter"
    as_model = served.swap("loud")
    assert as_model.status_code == 422 and "LoRA adapter of base" in as_model.json()["error"]["message"]

    removed = served.admin("DELETE", "/admin/adapters/loud")
    assert removed.status_code == 200 and "loud" not in removed.json()["loaded"]
    assert served.admin("DELETE", "/admin/adapters/loud").status_code == 404
    assert text(chat(served, "loud")) == loud == text(on_demand)  # loaded again on demand
    assert served.admin("DELETE", "/admin/adapters/loud").status_code == 200


# Prompts whose greedy answer changed with what ran before, before issue 24's fix (on an AMD EPYC, AVX2): ASK after a
# request to `loud` ("...I'm here to support" instead of "...I'm here to help"), the haiku when asked twice in a row.
SAME_ANSWER = [ASK, [{"role": "user", "content": "Write a haiku about autumn leaves."}]]


def test_one_answer_per_prompt_whatever_ran_before_in_the_companion_and_in_eval(served):
    """Greedy output is a function of (model, adapter, prompt, settings): the same prompt asked 5 times in a row, and
    5 times with a request to an adapter (and another prompt) before each, gives one answer, and Eval's generator
    (a fresh llama.cpp child, the adapter applied at load) gives that answer too, for the base and for the adapter."""
    from forge.eval import generate_all
    from forge.store import Store

    assert served.admin("POST", "/admin/adapters", json={"adapter_id": "loud"}).status_code == 200
    ask = lambda model, messages: text(chat(served, model, messages=messages, max_tokens=24))  # noqa: E731
    store = Store.for_workspace(served.workspace)
    base_path, loud_path = store.get_model("base")["path"], store.get_model("loud")["path"]
    store.close()
    for messages, other in (SAME_ANSWER, SAME_ANSWER[::-1]):
        in_a_row = [ask("base", messages) for _ in range(5)]
        between = []
        for _ in range(5):
            ask("loud", messages)
            ask("base", other)
            between.append(ask("base", messages))
        loud = [ask("loud", messages)]
        for _ in range(4):
            ask("base", messages)
            loud.append(ask("loud", messages))
        assert len(set(in_a_row + between)) == 1, (in_a_row, between)
        assert len(set(loud)) == 1 and loud[0] != in_a_row[0], loud
        prompt = [{"messages": messages, "expected": ""}]
        assert generate_all(base_path, prompt, max_tokens=24)[0]["output"] == in_a_row[0].strip()
        mixed = generate_all(base_path, [{"messages": m, "expected": ""} for m in
                                         (messages, messages, other, messages, messages, other, messages)], max_tokens=24)
        assert {r["output"] for i, r in enumerate(mixed) if i not in (2, 5)} == {in_a_row[0].strip()}
        assert generate_all(base_path, prompt, max_tokens=24, lora=loud_path)[0]["output"] == loud[0].strip()
    assert served.admin("DELETE", "/admin/adapters/loud").status_code == 200


def test_an_adapter_samples_with_its_own_decoding_defaults_unless_a_request_overrides_them(served):
    """An adapter whose GGUF carries decoding defaults (forge.decoding: temperature 2, seed 11) is sampled with them
    when a request sets nothing, the same answer each time (its seed) and the one Eval's generator gives; a request
    that sets temperature 0 gets the greedy answer; the base beside it stays greedy."""
    from forge.eval import generate_all
    from forge.store import Store

    assert served.admin("POST", "/admin/adapters", json={"adapter_id": "sampled"}).status_code == 200
    body = lambda **kw: {"model": "sampled", "messages": ASK, "max_tokens": 24, **kw}  # noqa: E731
    post = lambda b: text(httpx.post(f"{served.url}/v1/chat/completions", json=b, timeout=600))  # noqa: E731
    hot = [post(body()) for _ in range(2)]
    greedy = post(body(temperature=0))
    assert hot[0] == hot[1] and hot[0] != greedy
    assert post({"model": "base", "messages": ASK, "max_tokens": 24}) == post(
        {"model": "base", "messages": ASK, "max_tokens": 24, "temperature": 0})
    store = Store.for_workspace(served.workspace)
    base_path, sampled_path = store.get_model("base")["path"], store.get_model("sampled")["path"]
    store.close()
    prompt = [{"messages": ASK, "expected": ""}]
    assert generate_all(base_path, prompt, max_tokens=24, lora=sampled_path)[0]["output"] == hot[0].strip()
    assert served.admin("DELETE", "/admin/adapters/sampled").status_code == 200


def test_a_swap_brings_adapters_of_the_same_base_and_refuses_the_others(served):
    assert served.admin("POST", "/admin/adapters", json={"adapter_id": "loud"}).status_code == 200
    loud = text(chat(served, "loud"))
    same = served.swap("base-copy")  # the same file under another id: its adapters fit (by sha256)
    assert same.status_code == 200 and same.json()["adapters"] == ["loud"], same.text
    assert text(chat(served, "loud")) == loud
    other = served.swap("alt")
    assert other.status_code == 200 and other.json()["adapters"] == []
    assert "made for base 'base'" in other.json()["adapters_refused"]["loud"]
    assert text(chat(served, "loud")) == loud  # its base loaded again beside alt, loud on it: never alt's answer
    assert [b["model"] for b in served.health()["loaded"]] == ["alt", "base"]
    assert served.swap("base").status_code == 200
    assert [b["model"] for b in served.health()["loaded"]] == ["base"]


def test_no_request_fails_while_adapters_are_added_and_removed_under_load(served):
    assert served.admin("POST", "/admin/adapters", json={"adapter_id": "tuned"}).status_code == 200
    failures, done, stop = [], [], threading.Event()

    def client(model: str) -> None:
        while not stop.is_set():
            try:
                r = httpx.post(f"{served.url}/v1/chat/completions", timeout=900, json={
                    "model": model, "messages": ASK, "max_tokens": 4, "temperature": 0})
            except httpx.HTTPError as e:
                failures.append((model, repr(e)))
                continue
            (done if r.status_code == 200 and r.json()["model"] == model else failures).append((model, r.text))

    threads = [threading.Thread(target=client, args=(m,)) for m in ("base", "tuned")]
    for t in threads:
        t.start()
    try:
        for _ in range(2):
            assert served.admin("POST", "/admin/adapters", json={"adapter_id": "loud"}).status_code == 200
            assert chat(served, "loud", max_tokens=2).status_code == 200
            assert served.admin("DELETE", "/admin/adapters/loud").status_code == 200
    finally:
        stop.set()
        for t in threads:
            t.join(900)
    assert not failures and len(done) >= 2


def test_serving_an_adapter_on_its_own_is_refused_before_anything_loads(served):
    """`forge serve --model tuned` names an adapter: one line saying which base to serve and how to add it, at
    once (not a llama.cpp load failure after a model load)."""
    r = subprocess.run([sys.executable, "-m", "tui.launch", "--config", str(served.config_path), "serve", "--model",
                        "tuned", "--port", "1"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "FORGE_ADMIN_TOKEN": "x"})
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("forge: error: tuned is a LoRA adapter of base:") and "/admin/adapters" in line
    assert "Traceback" not in r.stderr and "loading" not in r.stderr


SWITCH_BACK = r"""
import json, sys
from companion.worker import Adapters
from forge.models.base_model import bundled_gguf
from forge.models.llama_child import load_llama

llm = load_llama(str(bundled_gguf()), n_ctx=512, n_threads=1, seed=0)
a = Adapters(llm)
a.add("loud", sys.argv[1])
ask = lambda: llm.create_chat_completion([{"role": "user", "content": "remind me to call mom tomorrow at 5"}],
                                         max_tokens=8, temperature=0)["choices"][0]["message"]["content"]
out = {"base": ask()}
a.apply("loud")
out["loud_first_kept"] = llm.n_tokens
out["loud"] = ask()
a.apply(None)
out["base_kept"] = llm.n_tokens
out["base_again"] = ask()
a.apply("loud")
out["loud_kept"] = llm.n_tokens
out["loud_again"] = ask()
a.remove("loud")  # while applied: the base comes back, with its cells
out["states_left"], out["base_kept_after_remove"] = [str(k) for k in a.states], llm.n_tokens
print(json.dumps(out))
"""


def test_switching_back_reuses_the_prompt_its_own_adapter_computed(trained_workspace, tmp_path):
    """An adapter switch keeps the outgoing adapter's KV cells and restores the incoming one's (in llama.cpp, in a
    child process): the prompt prefix each computed is read again by neither, and no answer changes — the base's
    after `loud` (alpha ×200, whose KV differs everywhere) is the base's first answer, token for token."""
    loud = loud_adapter(trained_workspace[3], tmp_path)
    p = subprocess.run([sys.executable, "-c", SWITCH_BACK, str(loud)], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["loud"] != out["base"] and out["base_again"] == out["base"] and out["loud_again"] == out["loud"]
    assert out["loud_first_kept"] == 0  # nothing computed with loud yet: an empty cache, never the base's cells
    assert out["base_kept"] > 8 and out["loud_kept"] > 8  # the prompt (template and request) came back with each
    assert out["states_left"] == [] and out["base_kept_after_remove"] > 8  # loud's cells went with it
