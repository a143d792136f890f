"""A small scripted OpenAI-compatible server on loopback, for the jobs that call an LLM (generate, backtranslate):
POST /v1/chat/completions answers from a script of steps, GET /v1/models lists the script's models."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator


def completion(content: str, prompt_tokens=11, completion_tokens=22, finish_reason="stop") -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


class Script:
    """Answers in order: each entry is ('status', code, headers) / ('json', content[, finish_reason]) /
    ('slow', seconds, content) / ('text', raw_body). After the script, `default(request number, body)` gives the
    step."""

    def __init__(self, steps, default: Callable[[int, dict], tuple], models=("m",)):
        self.steps = list(steps)
        self.default = default
        self.models = list(models)
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.count = 0

    def next(self, body: dict) -> tuple:
        with self.lock:
            self.count += 1
            return self.steps.pop(0) if self.steps else self.default(self.count, body)


@contextmanager
def scripted_server(default: Callable[[int, dict], tuple]) -> Iterator[Callable]:
    """Yields start(steps, models=("m",)) → (base URL ending in /v1, Script); each start replaces the script."""
    holder: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code: int, payload: bytes, headers: dict | None = None) -> None:
            try:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout under test)
                pass

        def do_GET(self):
            script = holder["script"]
            if self.path.rstrip("/").endswith("/models"):
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in script.models]
                self._send(200, json.dumps({"object": "list", "data": data}).encode())
            else:
                self._send(404, b'{"error": {"message": "not found"}}')

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            script = holder["script"]
            script.requests.append({"auth": self.headers.get("Authorization"), "body": body, "at": time.monotonic()})
            step = script.next(body)
            if step[0] == "status":
                self._send(step[1], json.dumps({"error": {"message": "busy", "type": "x"}}).encode(), step[2])
                return
            if step[0] == "slow":
                time.sleep(step[1])
                step = ("json", step[2])
            payload = json.dumps(completion(step[1], finish_reason=step[2] if len(step) > 2 else "stop")) \
                if step[0] == "json" else step[1]
            self._send(200, payload.encode())

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    def start(steps, models=("m",)):
        holder["script"] = Script(steps, default, models)
        return f"http://127.0.0.1:{httpd.server_address[1]}/v1", holder["script"]

    try:
        yield start
    finally:
        httpd.shutdown()
        httpd.server_close()
