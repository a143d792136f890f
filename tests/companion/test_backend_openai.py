"""The companion in front of a bigger engine (companion.backend kind openai): a second real `forge serve` on loopback
plays the external engine (it speaks the same OpenAI API as vLLM, llama-server and Ollama). The front companion
holds no model; health, /v1/models, chat (whole and streamed), /api/convert and swap go through to the engine."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.companion.conftest import start_server, stop_server
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def start_front(engine, tmp_path_factory, **backend):
    ws = tmp_path_factory.mktemp("front-ws")
    cfg = ws / "config.json"
    cfg.write_text(json.dumps({"workspace": str(ws), "companion": {
        "backend": {"kind": "openai", "base_url": f"{engine.url}/v1", **backend}, "request_timeout_s": 120}}))
    return start_server(cfg, ws)


@pytest.fixture(scope="module")
def front(companion, tmp_path_factory):
    """Holds the engine's admin token (the tests' servers all read it from $FORGE_ADMIN_TOKEN), so it may swap
    the engine."""
    c = start_front(companion, tmp_path_factory, admin_token_env="FORGE_ADMIN_TOKEN")
    yield c
    stop_server(c)


def test_front_serves_the_engines_model_and_holds_none(front, on_base):
    h = front.health()
    assert h["status"] == "healthy" and h["model"] == "base"  # the engine's first listed model
    assert h["provenance"]["backend"] == "openai" and h["provenance"]["base_url"].endswith("/v1")
    listed = front.openai().models.list().data
    engine = on_base.openai().models.list().data
    assert [m.id for m in listed] == [m.id for m in engine]  # what the engine serves, not a registry here
    assert listed[0].model_extra["loaded"] is True
    # no model file was loaded by the front: its workspace has no models/ folder
    assert not (front.workspace / "models").exists()


def test_chat_whole_and_streamed_match_the_engine(front, on_base):
    msgs = [{"role": "user", "content": "Name a colour."}]
    # the engine's first answer to a prompt can differ from later ones (llama.cpp reuses the cached prefix, whose
    # numerics differ slightly on this CPU): warm it, then compare answers that both come after the first
    on_base.openai().chat.completions.create(model="x", messages=msgs, max_tokens=12, temperature=0)
    direct = on_base.openai().chat.completions.create(model="x", messages=msgs, max_tokens=12, temperature=0)
    via = front.openai().chat.completions.create(model="x", messages=msgs, max_tokens=12, temperature=0)
    assert via.choices[0].message.content == direct.choices[0].message.content
    assert via.model == "base" and via.usage.completion_tokens == direct.usage.completion_tokens
    stream = front.openai().chat.completions.create(model="x", messages=msgs, max_tokens=12, temperature=0,
                                                    stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces) == direct.choices[0].message.content
    assert usage is not None and usage.completion_tokens == direct.usage.completion_tokens


def test_task_endpoint_and_errors_in_openai_shape(front, on_base):
    r = httpx.post(f"{front.url}/api/convert", json={"text": "remind me to call mum tomorrow"}, timeout=600)
    assert r.status_code in (200, 502), r.text  # the 135M model may not follow the schema; never a 500
    assert r.headers.get("X-Forge-Model") == "base" if r.status_code == 200 else "schema" in r.json()["error"]["message"]
    # the engine refuses (a schema llama.cpp cannot turn into a grammar): its 400 and reason pass through
    bad = {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {
        "a": {"$ref": "#/definitions/nowhere"}}}}}
    r = httpx.post(f"{front.url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                            "max_tokens": 4, "response_format": bad}, timeout=120)
    assert r.status_code == 400 and "the engine at" in r.json()["error"]["message"], r.text


def test_swap_goes_through_the_engines_own_swap_and_refuses_what_it_lacks(front, on_base):
    """A forge companion serves one model at a time and says which: a swap here is its own swap there."""
    r = front.swap("alt")
    assert r.status_code == 200, r.text
    assert front.health()["model"] == "alt" and on_base.health()["model"] == "alt"
    out = front.openai().chat.completions.create(model="alt", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=4, temperature=0)
    assert out.model == "alt"
    r = front.swap("no-such-model")
    assert r.status_code == 404 and "does not serve 'no-such-model'" in r.json()["error"]["message"]
    assert front.health()["model"] == "alt"  # a refused swap changes nothing
    assert front.swap("base").status_code == 200 and on_base.health()["model"] == "base"


def test_without_the_engines_token_a_swap_is_not_supported_by_this_backend(companion, on_base, tmp_path_factory):
    c = start_front(companion, tmp_path_factory)
    try:
        r = c.swap("alt")
        assert r.status_code == 409 and "not supported by this backend" in r.json()["error"]["message"]
        assert on_base.health()["model"] == "base" and c.health()["model"] == "base"
    finally:
        stop_server(c)


def test_engine_gone_is_a_clear_startup_error(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    cfg = ws / "config.json"
    cfg.write_text(json.dumps({"workspace": str(ws), "companion": {
        "backend": {"kind": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1", "timeout_s": 2}}}))
    with pytest.raises(RuntimeError, match="did not list its models"):
        start_server(cfg, ws)
