"""schemathesis, property-based tests generated from the companion's own OpenAPI schema, against create_app() served
on loopback with the scripted stand-in worker (no model needed). Every route, a small derandomized budget. Checks:
no 500, every status a route answers is declared in the schema, every error is in OpenAI's error shape, and the
admin routes answer 401 without the token. Its findings are kept below as plain regression tests."""

from __future__ import annotations

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")  # the dev extra; a bare install still runs the rest

from hypothesis import HealthCheck, settings  # noqa: E402

from tests.companion.standin import TOKEN, running, script, standin_app  # noqa: E402

EXAMPLES = 25  # per operation: enough to find what it found by hand, small enough for seconds
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TASK = {"extract": {"system": "Extract the fields.", "schema": {
    "type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}}}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The companion on the stand-in, with a task and a second model to swap to. `base` is a stand-in too, so
    listing models never copies the bundled GGUF."""
    ws = tmp_path_factory.mktemp("fuzz-ws")
    models = ws / "models" / "standin"
    base = script(models, "base", json={"title": "a title"})
    other = script(models, "other", json={"title": "a title"})
    app = standin_app(ws, base, other, tasks=TASK, max_queue=64)
    with running(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def api_schema(served):
    url, _ = served
    config = schemathesis.config.SchemathesisConfig.from_dict({
        "base-url": url,
        "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
    })
    return schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schemathesis.check
def openai_error_shape(ctx, response, case):
    """Every error answers {"error": {"message": str, "type": str, ...}}, as OpenAI's clients expect."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"not OpenAI's error shape: {body}"
    assert isinstance(body["error"].get("message"), str) and isinstance(body["error"].get("type"), str), body
    return True


@schema.parametrize()
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_route_keeps_its_schema(case):
    admin = case.path.startswith("/admin")
    if admin and case.method.upper() == case.operation.method.upper():  # (not a probe with another method)
        # the same request without the token, and with a wrong one: 401 before anything else is looked at
        for token in ("", "Bearer not-the-token"):
            response = case.call(headers={"Authorization": token}, timeout=30)
            case.validate_response(response, additional_checks=[openai_error_shape])
            assert response.status_code == 401, (token, response.status_code, response.text)
            assert response.json()["error"]["type"] == "authentication_error"
    case.call_and_validate(headers=AUTH if admin else None, additional_checks=[openai_error_shape], timeout=30)


# ---- its findings, kept -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["", [""], [], ["one", "two"]])
def test_a_completion_without_exactly_one_nonempty_prompt_is_a_400_not_a_500(served, prompt):
    """Found by hand with schemathesis: `{"prompt": ""}` reached llama.cpp, which asserted (a 500)."""
    url, _ = served
    r = httpx.post(f"{url}/v1/completions", json={"prompt": prompt}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error" and r.json()["error"]["param"] == "prompt"


@pytest.mark.parametrize("path,body", [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"prompt": "hi"}),
    ("/api/generate", {"prompt": "hi"}),
])
def test_an_integer_written_as_a_float_is_an_integer(served, path, body):
    """Found by schemathesis: JSON has one number type and JSON Schema counts 3.0 as an integer, but
    `"max_tokens": 3.0` was a 400. A string, a boolean or a fraction still is one."""
    url, _ = served
    ok = httpx.post(f"{url}{path}", json={**body, "max_tokens": 3.0, "seed": 7.0}, timeout=30)
    assert ok.status_code == 200, ok.text
    assert ok.json()["usage"]["completion_tokens"] == 3
    for bad in ("3", True, 3.5, 0.0):
        r = httpx.post(f"{url}{path}", json={**body, "max_tokens": bad}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens", (bad, r.text)


@pytest.mark.parametrize("body", [b"\x00", b"{", b'{"model_id": 5}'])
def test_admin_without_the_token_is_a_401_whatever_the_body(served, body):
    """Found by schemathesis: a broken body was answered 400 before the token was looked at."""
    url, _ = served
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        r = httpx.post(f"{url}/admin/reload-model", content=body, headers={"Content-Type": "application/json",
                                                                            **headers}, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text
    r = httpx.post(f"{url}/admin/reload-model", content=body, headers={"Content-Type": "application/json", **AUTH},
                   timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", r.text


def test_every_status_a_route_can_answer_is_declared_in_openai_error_shape(served):
    """Found by schemathesis: 11 statuses the routes answer were not in the schema, so generated clients and the
    fuzzer's conformance check did not know them."""
    _, app = served
    paths = app.openapi()["paths"]
    must = {("/v1/chat/completions", "post"): {400, 429, 500, 503, 504},
            ("/v1/completions", "post"): {400, 429, 500, 503, 504},
            ("/api/generate", "post"): {400, 429, 500, 503, 504},
            ("/api/{task}", "post"): {400, 404, 429, 500, 502, 503, 504},
            ("/admin/model", "get"): {401, 403},
            ("/admin/reload-model", "post"): {400, 401, 403, 404, 409, 422}}
    for (path, method), codes in must.items():
        declared = paths[path][method]["responses"]
        missing = {c for c in codes if str(c) not in declared}
        assert not missing, f"{method.upper()} {path} does not declare {sorted(missing)}"
        for code in codes:
            ref = declared[str(code)]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody"), (path, code, ref)


def test_a_wrong_method_names_every_method_the_path_answers(served):
    """Found by schemathesis: GET and POST /admin/adapters are two routes, and Starlette's 405 named only GET."""
    url, app = served
    paths = app.openapi()["paths"]
    for path, ops in paths.items():
        if "{" in path:
            continue
        r = httpx.request("PATCH", f"{url}{path}", headers=AUTH, timeout=30)
        assert r.status_code == 405 and r.json()["error"]["message"] == "Method Not Allowed", (path, r.text)
        allowed = {m.strip() for m in r.headers["allow"].split(",")}
        assert {m.upper() for m in ops} <= allowed, (path, allowed)
