"""Generation against a small scripted OpenAI-compatible server on loopback: retries, Retry-After, timeouts,
malformed replies and counts; and the API key never reaching the store or the output."""

import json
import os
import subprocess
import sys
import time

import pytest

from forge.config import Config
from forge.llm import generate as gen
from tests.conftest import REPO
from tests.forge.llm.llm_server import scripted_server

SECRET = "sk-test-SECRET-never-stored-0123456789"


def good(i: int) -> str:
    return json.dumps({"examples": [{"input": f"remind me to task {i}-{k} at {k}", "output": f"task {i}-{k} | at {k}"}
                                    for k in range(2)]})


@pytest.fixture
def server():
    """start(steps) → (url, script); after the script, good replies."""
    with scripted_server(lambda n, body: ("json", good(n))) as start:
        yield start


def cfg(tmp_path, **generate):
    base = dict(model="m", concurrency=1, timeout_s=1.0, backoff_base_s=0.05, backoff_max_s=0.2, per_request=2,
                max_retries=4)
    return Config(workspace=str(tmp_path / "ws"), generate={**base, **generate})


def test_retries_retry_after_timeouts_and_malformed_replies(server, store, tmp_path):
    url, script = server([
        ("status", 429, {"Retry-After": "0.3"}),
        ("status", 500, {}),
        ("slow", 2.0, good(100)),           # over the 1 s timeout: retried
        ("json", "no json here at all"),     # unparseable: counted, retried, never stored
        ("text", "{not json"),               # a broken body: retried
    ])
    config = cfg(tmp_path)
    t = time.perf_counter()
    r = gen.generate(store, config, url, 4, topic="reminders")
    took = time.perf_counter() - t
    assert r.added == 4 and store.counts()["pending"] == 4
    assert r.failed >= 1
    assert r.prompt_tokens >= 2 * 11 and r.completion_tokens >= 2 * 22
    assert took >= 0.3  # Retry-After was honoured
    assert len(script.requests) >= 7
    body = script.requests[0]["body"]
    assert body["response_format"]["type"] == "json_schema" and "reminders" in body["messages"][0]["content"]
    ex = store.examples()[0]
    assert ex.source_kind == "llm:m" and ex.meta["template"] == "pairs" and ex.meta["requested_at"]


def test_duplicates_are_not_added_and_caps_stop_the_run(server, store, tmp_path):
    same = good(1)
    url, script = server([("json", same), ("json", same), ("json", same)] + [("json", "nope")] * 50)
    r = gen.generate(store, cfg(tmp_path, max_requests=6), url, 10, topic="x")
    assert r.added == 2 and r.duplicates >= 2
    assert len(script.requests) == 6  # the request cap is hard
    url, script = server([])
    r = gen.generate(store, cfg(tmp_path, max_total_tokens=60), url, 100, topic="x")
    assert len(script.requests) == 2 and r.prompt_tokens + r.completion_tokens >= 60


def test_endpoint_without_json_schema_falls_back_to_parsing_text(server, store, tmp_path):
    fenced = "Sure!\n```json\n" + good(7) + "\n```"
    url, script = server([("status", 400, {}), ("json", fenced)])
    r = gen.generate(store, cfg(tmp_path), url, 2, topic="x")
    assert r.added == 2
    assert "response_format" not in script.requests[-1]["body"]


def test_variations_of_approved_examples(server, store, tmp_path, config):
    url, script = server([])
    store.ingest([{"extract_key": "a", "source_kind": "jsonl", "source_ref": "a", "tags": [],
                   "messages": [{"role": "user", "content": "find flights to Oslo"},
                                {"role": "assistant", "content": '{"intent": "search_flights"}'}]}])
    with pytest.raises(gen.GenerateError, match="approved"):
        gen.generate(store, cfg(tmp_path), url, 2, from_approved=True)
    store.set_status(store.ids()[0], "approved")
    r = gen.generate(store, cfg(tmp_path), url, 2, from_approved=True)
    assert r.added == 2 and "find flights to Oslo" in script.requests[0]["body"]["messages"][0]["content"]


def test_cli_contract_and_the_key_never_leaks(server, tmp_path):
    url, script = server([("status", 503, {})])
    ws = tmp_path / "ws"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}, "OPENROUTER_API_KEY": SECRET,
           "FORGE_GENERATE__BACKOFF_BASE_S": "0.05"}
    p = subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), "generate", "--base-url", url,
                        "--model", "m", "--n", "3", "--topic", "reminders", "--json"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert set(out) == {"added", "duplicates", "failed", "prompt_tokens", "completion_tokens", "model",
                        "model_how"} and out["added"] == 3 and (out["model"], out["model_how"]) == ("m", "")
    assert script.requests[0]["auth"] == f"Bearer {SECRET}"  # sent to the endpoint, and only there
    assert SECRET not in p.stdout + p.stderr
    for f in ws.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_without_model_the_first_listed_is_used_and_said(server, tmp_path):
    """--model is optional: a local server names what it serves at GET /v1/models; the output says which."""
    url, script = server([], models=("served-one", "other"))
    ws = tmp_path / "ws"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}}
    p = subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), "generate", "--base-url", url,
                        "--n", "2", "--topic", "reminders"], capture_output=True, text=True, cwd=REPO, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "model served-one (first of 2 listed at" in p.stdout
    assert {r["body"]["model"] for r in script.requests} == {"served-one"}
    url, _ = server([], models=())
    p = subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), "generate", "--base-url", url,
                        "--n", "2", "--topic", "reminders"], capture_output=True, text=True, cwd=REPO, env=env,
                       timeout=120)
    assert p.returncode == 1 and "lists no model: pass --model" in p.stderr and "Traceback" not in p.stderr
