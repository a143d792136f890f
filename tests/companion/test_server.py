"""The companion as a client sees it: real `forge serve` on loopback, the real SmolLM2 GGUF in llama.cpp, the
official `openai` client."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import jsonschema
import openai
import pytest

from tests.companion.conftest import TOKEN
from tests.conftest import add_model

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": "What is the capital of France?"}]
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                                           "age": {"type": "integer"}}, "required": ["name", "age"]}


def poll(fn, timeout=60.0, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def test_models_chat_stream_completion_and_json_schema(on_base):
    client = on_base.openai()
    models = client.models.list().data
    assert [m.id for m in models][:1] == ["base"] and {"base", "alt"} <= {m.id for m in models}
    base = models[0].model_dump()
    assert base["loaded"] is True and "general.name" in base["provenance"] and base["quant"] == "q4_1"

    r = client.chat.completions.create(model="base", messages=ASK, max_tokens=12, temperature=0)
    assert r.model == "base" and r.object == "chat.completion"
    assert r.choices[0].message.content.strip()
    assert r.usage.completion_tokens == 12 and r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens > 5 and r.usage.total_tokens == r.usage.prompt_tokens + 12

    # greedy is deterministic; sampling with a seed repeats itself
    again = client.chat.completions.create(model="base", messages=ASK, max_tokens=12, temperature=0)
    assert again.choices[0].message.content == r.choices[0].message.content
    seeded = [client.chat.completions.create(model="base", messages=ASK, max_tokens=16, temperature=1.0, seed=7)
              .choices[0].message.content for _ in range(2)]
    assert seeded[0] == seeded[1]

    stream = client.chat.completions.create(model="base", messages=ASK, max_tokens=12, temperature=0, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(pieces) > 3 and "".join(pieces) == r.choices[0].message.content

    stop = client.chat.completions.create(model="base", messages=ASK, max_tokens=40, temperature=0,
                                          stop=[r.choices[0].message.content.split()[1]])
    assert len(stop.choices[0].message.content) < len(r.choices[0].message.content)

    structured = client.chat.completions.create(
        model="base", messages=[{"role": "user", "content": "Describe a person as JSON."}], max_tokens=60,
        temperature=0, response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}})
    jsonschema.validate(json.loads(structured.choices[0].message.content), PERSON)
    any_json = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "Return JSON with a key answer: what is 2+2?"}],
                                              max_tokens=80, temperature=0, response_format={"type": "json_object"})
    assert isinstance(json.loads(any_json.choices[0].message.content), dict)

    completion = client.completions.create(model="base", prompt="The sky is", max_tokens=8, temperature=0)
    assert completion.choices[0].text.strip() and completion.usage.completion_tokens == 8


def test_raw_sse_ends_with_done_and_errors_have_openai_shape(on_base):
    with httpx.stream("POST", f"{on_base.url}/v1/chat/completions", timeout=60,
                      json={"messages": ASK, "max_tokens": 6, "stream": True,
                            "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert all(c["model"] == "base" for c in chunks) and chunks[-1]["usage"]["completion_tokens"] == 6

    bad = httpx.post(f"{on_base.url}/v1/chat/completions", json={"messages": []}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        on_base.openai().chat.completions.create(model="base", messages=ASK, temperature=5)
    assert "temperature" in str(e.value)
    schema_err = httpx.post(f"{on_base.url}/v1/chat/completions", timeout=10, json={
        "messages": ASK, "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
    assert schema_err.status_code == 400 and "schema" in schema_err.json()["error"]["message"]
    assert httpx.get(f"{on_base.url}/v1/nope", timeout=10).json()["error"]["type"] == "not_found_error"


def test_health_counts_requests_and_tokens(on_base):
    before = on_base.health()
    on_base.openai().chat.completions.create(model="base", messages=ASK, max_tokens=10, temperature=0)
    after = on_base.health()
    assert after["status"] == "healthy" and after["model"] == "base" and after["loaded_at"]
    assert after["requests_served"] == before["requests_served"] + 1
    assert after["completion_tokens"] == before["completion_tokens"] + 10
    assert after["tokens_per_s"] > 0 and after["avg_latency_ms"] > 0


def test_convert_task_returns_schema_valid_json(on_base):
    r = httpx.post(f"{on_base.url}/api/convert", json={"text": "remind me to call mum tomorrow at 9am"}, timeout=120)
    assert r.status_code == 200, r.text
    from forge.config import CONVERT_TASK

    jsonschema.validate(r.json(), CONVERT_TASK["schema"])
    assert r.headers["x-forge-model"] == "base"
    missing = httpx.post(f"{on_base.url}/api/translate", json={"text": "x"}, timeout=10)
    assert missing.status_code == 404 and "convert" in missing.json()["error"]["message"]
    assert httpx.post(f"{on_base.url}/api/convert", json={"txt": "x"}, timeout=10).status_code == 400


def test_plain_generate_endpoint_and_docs(on_base):
    r = httpx.post(f"{on_base.url}/api/generate", json={"prompt": "What is the capital of France?", "max_tokens": 12},
                   timeout=60).json()
    chat = on_base.openai().chat.completions.create(model="base", messages=ASK, max_tokens=12, temperature=0)
    assert r["text"] == chat.choices[0].message.content and r["usage"]["completion_tokens"] == 12
    assert r["model"] == "base" and r["latency_ms"] > 0
    assert httpx.get(f"{on_base.url}/docs", timeout=10).status_code == 200
    paths = httpx.get(f"{on_base.url}/openapi.json", timeout=10).json()["paths"]
    assert {"/v1/chat/completions", "/api/generate", "/health", "/admin/reload-model"} <= set(paths)


def test_admin_needs_the_token_and_takes_registry_ids_only(on_base):
    assert on_base.admin("GET", "/admin/model", token=None).status_code == 401
    assert on_base.admin("GET", "/admin/model", token="wrong").status_code == 401
    assert on_base.admin("POST", "/admin/reload-model", token=None, json={"model_id": "alt"}).status_code == 401
    current = on_base.admin("GET", "/admin/model")
    assert current.status_code == 200 and current.json()["model"] == "base"
    for bad in ("../base", "/etc/passwd", "models/alt/smollm2-q8_0.gguf", "alt/../../x", "~root", ""):
        r = on_base.swap(bad)
        assert r.status_code == 400, (bad, r.status_code)
        assert "registry id" in r.json()["error"]["message"]
    unknown = on_base.swap("no-such-model")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "model_not_found"
    assert on_base.health()["model"] == "base"


def test_admin_is_refused_to_a_non_loopback_client(companion_ws):
    """The peer address comes from the socket (ASGI `client`), never a header; the token alone is not enough."""
    import asyncio

    from companion.app import create_app
    from companion.settings import Settings
    from forge.config import load_config

    config = load_config(companion_ws[0], environ={})
    app = create_app(Settings(config=config, admin_token=TOKEN))

    async def call(client_host: str, token: str = TOKEN):
        transport = httpx.ASGITransport(app=app, client=(client_host, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://companion") as c:
            return await c.get("/admin/model", headers={"Authorization": f"Bearer {token}",
                                                        "X-Forwarded-For": "127.0.0.1"})

    remote = asyncio.run(call("192.0.2.10"))
    assert remote.status_code == 403 and "loopback" in remote.json()["error"]["message"]
    assert asyncio.run(call("127.0.0.1", token="wrong")).status_code == 401  # past the loopback check

    config.companion.allow_remote_admin = True  # configured: a remote client still needs the token
    app = create_app(Settings(config=config, admin_token=TOKEN))

    async def without_token():
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://companion") as c:
            return await c.get("/admin/model")

    assert asyncio.run(without_token()).status_code == 401


def test_cors_allows_only_configured_origins(companion_ws):
    import asyncio

    from companion.app import create_app
    from companion.settings import Settings
    from forge.config import ConfigError, load_config

    config = load_config(companion_ws[0], environ={})
    config.companion.cors_origins = ["http://localhost:3000"]
    app = create_app(Settings(config=config, admin_token=TOKEN))

    async def preflight(origin: str):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://companion") as c:
            return await c.options("/v1/chat/completions", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})

    ok = asyncio.run(preflight("http://localhost:3000"))
    assert ok.headers.get("access-control-allow-origin") == "http://localhost:3000"
    assert "access-control-allow-origin" not in asyncio.run(preflight("http://evil.example")).headers
    with pytest.raises(ConfigError, match="wildcard"):
        load_config(companion_ws[0], environ={"FORGE_COMPANION__CORS_ORIGINS": '["*"]'})


def test_serve_refuses_an_unknown_model_before_binding(companion_ws, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO, free_port

    p = subprocess.run([sys.executable, "-m", "tui.launch", "--config", str(companion_ws[0]), "serve", "--port",
                        str(free_port()), "--model", "nope"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode == 1 and "no model 'nope'" in p.stderr and "Traceback" not in p.stderr


def test_swaps_under_concurrent_load_drop_nothing(on_base):
    """Four clients (streaming and not) keep asking while the model is swapped four times."""
    results, errors, stop = [], [], threading.Event()

    def client_loop(i: int):
        client = on_base.openai(max_retries=0, timeout=120)
        while not stop.is_set():
            t = time.perf_counter()
            try:
                if i % 2:
                    r = client.chat.completions.create(model="any", messages=ASK, max_tokens=8, temperature=0)
                    model, text = r.model, r.choices[0].message.content
                else:
                    chunks = list(client.chat.completions.create(model="any", messages=ASK, max_tokens=8,
                                                                 temperature=0, stream=True))
                    model, text = chunks[0].model, "".join(c.choices[0].delta.content or "" for c in chunks
                                                           if c.choices)
                assert text
                results.append((model, time.perf_counter() - t))
            except Exception as e:  # any failure is what this test is about
                errors.append(repr(e))

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client_loop, i) for i in range(4)]
        time.sleep(1.0)
        swaps = []
        for target in ("alt", "base", "alt", "base"):
            r = on_base.swap(target)
            assert r.status_code == 200, r.text
            swaps.append(r.json())
            time.sleep(0.5)
        stop.set()
        for f in futures:
            f.result()
    assert errors == []
    assert {m for m, _ in results} == {"base", "alt"} and len(results) >= 20
    assert [s["model"] for s in swaps] == ["alt", "base", "alt", "base"]
    assert all(s["previous"] != s["model"] and s["smoke"] is not None for s in swaps)
    h = on_base.health()
    assert h["model"] == "base" and h["last_swap"]["ok"] is True
    # the old workers drained and exited: only one worker process is left
    poll(lambda: len(worker_pids(on_base)) == 1, 30)


def worker_pids(c) -> list[int]:
    import psutil

    return [p.pid for p in psutil.Process(c.proc.pid).children(recursive=True)
            if "companion.worker" in " ".join(p.cmdline())]


def test_cli_swap(on_base):
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "FORGE_ADMIN_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "tui.launch", "--config", str(on_base.config_path), "swap", "--url", on_base.url]
    ok = subprocess.run([*cmd, "alt", "--json"], capture_output=True, text=True, cwd=REPO, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["model"] == "alt" and on_base.health()["model"] == "alt"
    bad = subprocess.run([*cmd, "../alt"], capture_output=True, text=True, cwd=REPO, env=env)
    assert bad.returncode == 1 and "registry id" in bad.stderr and "Traceback" not in bad.stderr
    wrong = subprocess.run([*cmd, "base"], capture_output=True, text=True, cwd=REPO,
                           env={**env, "FORGE_ADMIN_TOKEN": "nope"})
    assert wrong.returncode == 1 and "401" in wrong.stderr
    assert on_base.health()["model"] == "alt"
    # the next `forge serve` without --model starts with the model swapped to
    from companion.settings import model_to_serve
    from forge.config import load_config

    assert model_to_serve(load_config(on_base.config_path, environ={}), None)[0] == "alt"


def test_corrupt_or_changed_models_are_refused_and_the_old_one_keeps_serving(on_base):
    from forge.config import load_config
    from forge.store import Store

    config = load_config(on_base.config_path, environ={})
    store = Store.for_workspace(on_base.workspace)
    broken = on_base.workspace / "models" / "broken" / "broken.gguf"
    broken.parent.mkdir(exist_ok=True)
    broken.write_bytes(b"GGUF" + os.urandom(4096))  # registered, checksummed, and not a model
    add_model(store, config, "broken", broken, "q4_k_m")
    changed = on_base.workspace / "models" / "changed" / "changed.gguf"
    changed.parent.mkdir(exist_ok=True)
    changed.write_bytes((on_base.workspace / "models" / "alt" / "smollm2-q8_0.gguf").read_bytes())
    add_model(store, config, "changed", changed, "q8_0")
    crashy = on_base.workspace / "models" / "crashy" / "crashy.gguf"  # loads, then llama.cpp "crashes" (abort)
    crashy.parent.mkdir(exist_ok=True)
    crashy.write_bytes((on_base.workspace / "models" / "alt" / "smollm2-q8_0.gguf").read_bytes())
    add_model(store, config, "crashy", crashy, "q8_0")
    store.close()
    with changed.open("r+b") as f:  # flipped after registration
        f.seek(10_000)
        f.write(b"\xff\xff\xff\xff")

    r = on_base.swap("broken")
    assert r.status_code == 422 and "failed to load" in r.json()["error"]["message"]
    r = on_base.swap("changed")
    assert r.status_code == 422 and "sha256" in r.json()["error"]["message"]
    r = on_base.swap("crashy")
    assert r.status_code == 422 and "crashed (signal" in r.json()["error"]["message"]
    h = on_base.health()
    assert h["model"] == "base" and h["status"] == "healthy" and h["last_swap"]["ok"] is False
    reply = on_base.openai().chat.completions.create(model="base", messages=ASK, max_tokens=4)
    assert reply.model == "base" and reply.choices[0].message.content


def test_killing_the_worker_mid_request_fails_only_that_request(on_base):
    client = on_base.openai(max_retries=0, timeout=120)
    pid = on_base.health()["worker_pid"]
    outcome = {}

    def long_request():
        try:
            client.chat.completions.create(model="base", messages=[{"role": "user", "content": "Write a story."}],
                                           max_tokens=800, temperature=0)
            outcome["ok"] = True
        except openai.APIStatusError as e:
            outcome["status"], outcome["message"] = e.status_code, str(e)

    t = threading.Thread(target=long_request)
    t.start()
    poll(lambda: on_base.health()["busy"], 30, 0.05)
    os.kill(pid, signal.SIGKILL)
    t.join(60)
    assert outcome.get("status") == 500 and "SIGKILL" in outcome["message"]
    reply = client.chat.completions.create(model="base", messages=ASK, max_tokens=4)  # waits for the new worker
    assert reply.choices[0].message.content
    h = on_base.health()
    assert h["status"] == "healthy" and h["restarts"] >= 1 and h["worker_pid"] != pid


def test_a_full_queue_answers_429_at_once(on_base):
    """max_queue is 6 here: 1 generating + 6 waiting; the rest are refused with Retry-After, not left hanging."""
    body = {"messages": ASK, "max_tokens": 48, "temperature": 0}

    def one(_):
        t = time.perf_counter()
        r = httpx.post(f"{on_base.url}/v1/chat/completions", json=body, timeout=120)
        return r, time.perf_counter() - t

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(12)))
    codes = sorted(r.status_code for r, _ in results)
    assert set(codes) == {200, 429} and codes.count(200) >= 7
    refused = [(r, dt) for r, dt in results if r.status_code == 429]
    assert all(r.headers["retry-after"] and r.json()["error"]["type"] == "rate_limit_exceeded" for r, _ in refused)
    assert max(dt for _, dt in refused) < min(dt for r, dt in results if r.status_code == 200) + 0.5


def test_generate_against_the_companion_with_json_schema(on_base, tmp_path):
    """Issue 8's loop closed: forge generate → the companion → new pending examples, parsed from json_schema
    output of the bundled SmolLM2."""
    import subprocess
    import sys

    from forge.config import load_config
    from forge.store import Store
    from tests.conftest import REPO

    cfg = json.loads(on_base.config_path.read_text())
    cfg["workspace"] = str(tmp_path / "gen-ws")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    p = subprocess.run([sys.executable, "-m", "tui.launch", "--config", str(tmp_path / "config.json"), "generate",
                        "--base-url", f"{on_base.url}/v1", "--model", "base", "--n", "3", "--topic",
                        "turning a spoken reminder into 'task | time'", "--json"],
                       capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["added"] >= 1 and out["completion_tokens"] > 0
    store = Store.for_workspace(load_config(tmp_path / "config.json", environ={}).workspace_path())
    rows = store.examples()
    assert len(rows) == out["added"] and all(r.status == "pending" and r.source == "llm:base:pairs" for r in rows)
    assert all([m["role"] for m in r.messages] == ["user", "assistant"] for r in rows)


def test_a_companion_started_by_the_ui_stops_when_the_ui_is_killed(companion_ws):
    """The TUI starts `forge serve --exit-with-parent`; kill -9 of the UI must not leave a server on the port."""
    import subprocess
    import sys

    import psutil

    from tests.conftest import REPO, free_port

    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-m', 'companion.cli', '--config', {str(companion_ws[0])!r}, 'serve', "
        f"'--port', '{port}', '--exit-with-parent'])\n"
        "time.sleep(600)")], cwd=REPO)
    try:
        poll(lambda: _healthy(port), 60)
        worker = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()["worker_pid"]
        server = [p for p in psutil.Process(parent.pid).children() if "companion.cli" in " ".join(p.cmdline())][0]
        parent.kill()
        parent.wait()
        assert server.wait(30) is not None or not server.is_running()
        poll(lambda: not _healthy(port), 10)
        poll(lambda: not psutil.pid_exists(worker), 20)  # and it took its model worker with it
    finally:
        parent.kill()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()["status"] == "healthy"
    except httpx.HTTPError:
        return False
