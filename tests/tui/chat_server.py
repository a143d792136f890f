"""A scripted companion on loopback for the Companion mode's tests: GET /health says healthy, POST
/v1/chat/completions streams (SSE, as the OpenAI client reads it) "reply to <last user message>" word by word.
Each reply waits until the test releases it (`release(text)`), so a test decides the order replies finish in."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


class ChatScript:
    def __init__(self) -> None:
        self.requests: list[list[dict]] = []  # the messages of each chat request, in arrival order
        self.gates: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self.hold = False  # when True, each reply waits for release(its user text)

    def gate(self, text: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(text, threading.Event())

    def release(self, text: str) -> None:
        self.gate(text).set()


@contextmanager
def chat_server() -> Iterator[tuple[int, ChatScript]]:
    """Yields (port, script)."""
    script = ChatScript()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path.startswith("/health"):
                body = json.dumps({"status": "healthy", "model": "scripted", "quant": "q4", "requests_served": 0,
                                   "requests_failed": 0, "queue": 0}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)

        def do_POST(self):
            if not self.path.startswith("/v1/chat/completions"):
                body = json.dumps({"error": {"message": "no swaps on this scripted server", "type": "x"}}).encode()
                self.send_response(409)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            messages = body["messages"]
            script.requests.append(messages)
            last = messages[-1]["content"]
            if script.hold:
                script.gate(last).wait(30)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for word in f"reply to {last}".split():
                    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
                             "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1], script
    finally:
        for gate in list(script.gates.values()):
            gate.set()
        httpd.shutdown()
        httpd.server_close()
