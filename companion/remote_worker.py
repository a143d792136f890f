"""A worker that holds no model: `python -m companion.remote_worker MODEL OPTIONS_JSON` forwards each request to an
external OpenAI-compatible engine (vLLM, llama-server, Ollama, SGLang, another `forge serve`) named by
config `companion.backend` (kind openai), speaking companion.worker's pipe protocol on stdin/stdout.

So the pool in front of it is the same one as for a local model: one request at a time per worker, the queue and
its 429/503, cancel on client disconnect, blue/green swap (to another model the engine serves), restart when the
worker dies, and every error in OpenAI's shape. The engine's address comes in FORGE_BACKEND_URL, its key (if any)
in the variable FORGE_BACKEND_KEY_ENV names.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time

import httpx

from companion.worker import SAMPLING, _emit, read_requests

FORWARDED = SAMPLING + ("response_format",)


class Upstream(Exception):
    def __init__(self, status: int, type_: str, message: str):
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


def _headers() -> dict:
    env = os.environ.get("FORGE_BACKEND_KEY_ENV")
    key = os.environ.get(env) if env else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def upstream_error(r: httpx.Response, base_url: str) -> Upstream:
    """The engine's error, passed on: a 4xx keeps its status and message (the client's request was refused), a 5xx
    becomes 502 naming the engine."""
    try:
        body = r.json()
        err = body.get("error") if isinstance(body, dict) else None
        message = (err.get("message") if isinstance(err, dict) else err) or body.get("detail") or r.text
    except (ValueError, AttributeError):
        message = r.text
    message = str(message)[:500]
    if r.status_code < 500:
        return Upstream(429 if r.status_code == 429 else 400, "invalid_request_error",
                        f"the engine at {base_url} refused ({r.status_code}): {message}")
    return Upstream(502, "upstream_error", f"the engine at {base_url} answered {r.status_code}: {message}")


class RemoteWorker:
    def __init__(self, base_url: str, model: str, default_max_tokens: int, timeout_s: float):
        self.base_url, self.model, self.default_max_tokens = base_url, model, default_max_tokens
        self.client = httpx.Client(headers=_headers(), timeout=httpx.Timeout(timeout_s, connect=10.0))
        self.cancelled: set[int] = set()
        self.inbox: queue.Queue = queue.Queue()

    def read_stdin(self) -> None:
        read_requests(self.inbox, self.cancelled)

    def body(self, op: str, params: dict, stream: bool) -> dict:
        body = {k: params[k] for k in FORWARDED if params.get(k) is not None}
        body.setdefault("max_tokens", self.default_max_tokens)
        body["model"] = self.model
        if op == "chat":
            body["messages"] = params["messages"]
        elif op == "completion":
            body["prompt"] = params["prompt"]
        else:
            raise Upstream(400, "invalid_request_error", f"unknown op {op!r}")
        body["stream"] = stream
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def url(self, op: str) -> str:
        return f"{self.base_url}/{'chat/completions' if op == 'chat' else 'completions'}"

    def handle(self, req: dict) -> None:
        rid, op, params, stream = req["id"], req["op"], req.get("params") or {}, bool(req.get("stream"))
        t0 = time.perf_counter()
        body = self.body(op, params, True)
        if not stream:
            body["stream"] = False
            body.pop("stream_options", None)
            r = self.client.post(self.url(op), json=body)
            if r.status_code != 200:
                raise upstream_error(r, self.base_url)
            result = r.json()
            result["forge_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            result.setdefault("usage", {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
            _emit({"id": rid, "result": result})
            return
        finish, usage, pieces = None, None, 0
        with self.client.stream("POST", self.url(op), json=body) as r:
            if r.status_code != 200:
                r.read()
                raise upstream_error(r, self.base_url)
            for line in r.iter_lines():
                if rid in self.cancelled:  # the client left: closing the stream stops the engine's generation
                    finish = "cancelled"
                    break
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if chunk.get("error"):
                    err = chunk["error"]
                    raise Upstream(502, "upstream_error", f"the engine at {self.base_url} failed mid-stream: "
                                   f"{err.get('message') if isinstance(err, dict) else err}")
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if not chunk.get("choices"):
                    continue
                choice = chunk["choices"][0]
                finish = choice.get("finish_reason") or finish
                pieces += 1
                _emit({"id": rid, "chunk": chunk})
        self.cancelled.discard(rid)
        if usage is None:  # an engine that ignores stream_options: one chunk is about one token
            usage = {"prompt_tokens": 0, "completion_tokens": pieces, "total_tokens": pieces}
        _emit({"id": rid, "end": {"finish_reason": finish, "usage": usage,
                                  "forge_ms": round((time.perf_counter() - t0) * 1000, 1)}})

    def serve(self) -> None:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        while (req := self.inbox.get()) is not None:
            try:
                self.handle(req)
            except Upstream as e:
                _emit({"id": req.get("id"), "error": {"status": e.status, "type": e.type, "message": e.message}})
            except httpx.HTTPError as e:
                _emit({"id": req.get("id"), "error": {"status": 502, "type": "upstream_unavailable",
                                                      "message": f"the engine at {self.base_url} did not answer "
                                                                 f"({type(e).__name__})"}})
            except Exception as e:  # noqa: BLE001 - a reply we cannot read is the engine's fault, said as such
                _emit({"id": req.get("id"), "error": {"status": 502, "type": "upstream_error",
                                                      "message": f"{type(e).__name__}: {e}"[:500]}})


def main() -> None:
    model, opts = sys.argv[1], json.loads(sys.argv[2])
    base_url = os.environ.get("FORGE_BACKEND_URL", "").rstrip("/")
    t0 = time.perf_counter()
    w = RemoteWorker(base_url, model, opts.get("max_tokens", 512), float(os.environ.get("FORGE_BACKEND_TIMEOUT",
                                                                                      "300")))
    try:
        r = w.client.get(f"{base_url}/models", timeout=10)
        r.raise_for_status()
        listed = [m.get("id") for m in r.json().get("data", [])]
    except Exception as e:  # noqa: BLE001
        _emit({"event": "failed", "error": f"the engine at {base_url} did not list its models: "
                                           f"{type(e).__name__}: {e}"[:500]})
        sys.exit(1)
    if listed and model not in listed:
        _emit({"event": "failed", "error": f"the engine at {base_url} does not serve {model!r} (it lists: "
                                           f"{', '.join(map(str, listed[:10]))})"})
        sys.exit(1)
    load_ms = round((time.perf_counter() - t0) * 1000, 1)
    _emit({"event": "loaded", "load_ms": load_ms})
    if sys.stdin.readline().strip() != "smoke":
        sys.exit(0)
    t1 = time.perf_counter()
    try:  # an engine that lists the model but cannot generate never takes traffic
        r = w.client.post(f"{base_url}/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4,
            "temperature": 0})
        if r.status_code != 200:
            raise upstream_error(r, base_url)
        smoke = r.json()["choices"][0]["message"]["content"]
    except Exception as e:  # noqa: BLE001
        _emit({"event": "failed", "error": f"smoke test: {type(e).__name__}: {e}"[:500]})
        sys.exit(1)
    _emit({"event": "ready", "load_ms": load_ms, "smoke_ms": round((time.perf_counter() - t1) * 1000, 1),
           "smoke": smoke, "n_ctx": opts.get("n_ctx"), "pid": os.getpid(),
           "metadata": {"backend": "openai", "base_url": base_url, "engine_model": model}})
    w.serve()


if __name__ == "__main__":
    main()
