"""A scripted stand-in for `companion.worker` (testing only): the same JSON-lines pipe protocol, no llama.cpp.

It exists so that every interleaving of crashes, stalls, swaps and cancels can be made to happen on purpose, in
a fraction of a second; the real worker keeps its own tests against the real GGUF (tests/companion/test_server.py).

`python -m tests.companion.standin_worker SCRIPT_PATH OPTIONS_JSON`: the "model file" is a JSON script:

  {"load":  BEHAVIOUR or [BEHAVIOUR for launch 1, launch 2, …] (the last one repeats),
   "smoke": BEHAVIOUR or a list, indexed by launch like "load",
   "reply": "words the model says", "token_s": seconds between tokens, "cancel_s": seconds to stop after a cancel,
   "json": {...} the reply to a request with a response_format}

  BEHAVIOUR: "ok" | "fail" (a clean {"event": "failed"}) | "crash" (SIGKILL itself) | "hang" (never answers) |
             {"wait_for": "NAME"} (block until the file NAME beside the script exists, then ok) |
             {"sleep": SECONDS} (a load or smoke test that takes a while, then ok)

A request whose text contains <<crash>> SIGKILLs the worker after its first token, <<hang>> never ends,
<<error>> answers a 400. Everything that happens is appended to SCRIPT_PATH.log ("launch PID", "smoke PID",
"start ID", "cancel ID", "end ID REASON", "overlap ID"): a request that arrives while another is still
generating breaks the protocol's one-at-a-time promise; it is logged as "overlap" and answered with a 500, so a
test sees it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


_out = threading.Lock()


def emit(obj: dict) -> None:
    with _out:  # two threads write (the reader answers overlaps): whole lines only
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class Log:
    def __init__(self, script: Path):
        self.path = script.with_name(script.name + ".log")

    def add(self, line: str) -> int:
        """Append a line; returns how many "launch" lines the log held before (this worker's launch index)."""
        with self.path.open("a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.seek(0)
            launches = sum(1 for row in f if row.startswith("launch "))
            f.write(line + "\n")
            f.flush()
            return launches


def pick(value, index: int):
    if isinstance(value, list):
        return value[min(index, len(value) - 1)] if value else "ok"
    return value if value is not None else "ok"


def behave(what, script: Path, stage: str) -> None:
    """Act out one BEHAVIOUR at a load or smoke stage; returns when the stage should succeed."""
    if isinstance(what, dict) and "sleep" in what:
        time.sleep(what["sleep"])
        return
    if isinstance(what, dict) and "wait_for" in what:
        gate = script.with_name(what["wait_for"])
        while not gate.exists():
            time.sleep(0.01)
        return
    if what == "fail":
        emit({"event": "failed", "error": f"stand-in told to fail at {stage}"})
        sys.exit(1)
    if what == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if what == "hang":
        while True:
            time.sleep(3600)


class StandIn:
    def __init__(self, script: Path, spec: dict, log: Log, max_tokens: int):
        self.script, self.spec, self.log = script, spec, log
        self.words = (spec.get("reply") or "hello from the stand-in worker").split()
        self.max_tokens = max_tokens
        self.lock = threading.Lock()
        self.busy: int | None = None  # the request being generated
        self.cancelled: set[int] = set()
        self.inbox: list[dict] = []
        self.arrived = threading.Condition(self.lock)

    def read_stdin(self) -> None:
        for line in sys.stdin:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.lock:
                if "cancel" in msg:
                    self.cancelled.add(msg["cancel"])
                    self.log.add(f"cancel {msg['cancel']}")
                    continue
                if self.busy is not None:
                    self.log.add(f"overlap {msg.get('id')}")
                    emit({"id": msg.get("id"), "error": {
                        "status": 500, "type": "protocol_violation",
                        "message": f"request {msg.get('id')} arrived while {self.busy} was still generating"}})
                    continue
                self.busy = msg.get("id")  # taken at once: the next line checks against it
                self.inbox.append(msg)
                self.arrived.notify()
        with self.lock:
            self.inbox.append(None)
            self.arrived.notify()

    def serve(self) -> None:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        while True:
            with self.lock:
                while not self.inbox:
                    self.arrived.wait()
                req = self.inbox.pop(0)
            if req is None:
                return
            self.handle(req)

    def handle(self, req: dict) -> None:
        rid, op, params, stream = req["id"], req["op"], req.get("params") or {}, bool(req.get("stream"))
        self.log.add(f"start {rid}")
        text = params.get("prompt") if op == "completion" else " ".join(
            str(m.get("content") or "") for m in params.get("messages") or [])
        text = text or ""
        if "<<error>>" in text:
            self.log.add(f"end {rid} error")
            return self.done({"id": rid, "error": {"status": 400, "type": "invalid_request_error",
                                                   "message": "the stand-in was told to refuse this request"}})
        if params.get("response_format") and params["response_format"].get("type") not in (None, "text"):
            pieces = [json.dumps(self.spec.get("json", {}))]
        else:
            limit = params.get("max_tokens") or self.max_tokens
            pieces = [w + " " for w in self.words[:limit]]
        finish = "length" if params.get("max_tokens") and params["max_tokens"] < len(self.words) else "stop"
        out = []
        for i, piece in enumerate(pieces):
            if i and self.spec.get("token_s"):
                time.sleep(self.spec["token_s"])
            if "<<hang>>" in text:
                while rid not in self.cancelled:
                    time.sleep(0.01)
            with self.lock:
                cancelled = rid in self.cancelled
            if cancelled:
                time.sleep(self.spec.get("cancel_s", 0))  # a token in progress finishes first
                finish = "cancelled"
                break
            out.append(piece)
            if stream:
                emit({"id": rid, "chunk": self.chunk(rid, op, piece, None)})
            if "<<crash>>" in text:
                os.kill(os.getpid(), signal.SIGKILL)
        usage = {"prompt_tokens": len(text.split()), "completion_tokens": len(out)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self.log.add(f"end {rid} {finish}")
        if stream or finish == "cancelled":
            return self.done({"id": rid, "end": {"finish_reason": finish, "usage": usage, "forge_ms": 1.0}})
        content = "".join(out)
        if op == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None,
                      "finish_reason": finish}
        else:
            choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": finish}
        self.done({"id": rid, "result": {"id": f"standin-{rid}", "object": "chat.completion" if op == "chat"
                                         else "text_completion", "created": int(time.time()), "choices": [choice],
                                         "usage": usage, "forge_ms": 1.0}})

    def done(self, msg: dict) -> None:
        """The request's last message. Free before it is written: the API may send the next one the moment it
        reads this."""
        with self.lock:
            self.busy = None
            emit(msg)

    @staticmethod
    def chunk(rid: int, op: str, piece: str, finish) -> dict:
        if op == "chat":
            return {"id": f"standin-{rid}", "object": "chat.completion.chunk", "created": int(time.time()),
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": finish}]}
        return {"id": f"standin-{rid}", "object": "text_completion", "created": int(time.time()),
                "choices": [{"index": 0, "text": piece, "finish_reason": finish}]}


def main() -> None:
    script, opts = Path(sys.argv[1]), json.loads(sys.argv[2])
    spec = json.loads(script.read_text())
    log = Log(script)
    launch = log.add(f"launch {os.getpid()}")
    behave(pick(spec.get("load"), launch), script, "load")
    emit({"event": "loaded", "load_ms": 1.0})
    if sys.stdin.readline().strip() != "smoke":
        sys.exit(0)
    log.add(f"smoke {os.getpid()}")
    behave(pick(spec.get("smoke"), launch), script, "smoke")
    emit({"event": "ready", "load_ms": 1.0, "smoke_ms": 1.0, "smoke": "hello", "n_ctx": opts.get("n_ctx", 2048),
          "metadata": {"general.name": f"stand-in {script.stem}"}, "pid": os.getpid()})
    StandIn(script, spec, log, opts.get("max_tokens", 512)).serve()


if __name__ == "__main__":
    main()
