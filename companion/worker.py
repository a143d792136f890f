"""The model worker: one child process per loaded model, `python -m companion.worker MODEL_PATH OPTIONS_JSON`.

llama.cpp runs only here, never in the API process: a segfault or abort inside it ends this process, which the
API turns into an error response for the request in flight and a fresh worker for the next one.

Protocol, one JSON object per line:
  stdout, once:   {"event": "ready", "load_ms", "smoke", "metadata", "n_ctx"}  or  {"event": "failed", "error"}
  stdin:          {"id": N, "op": "chat" | "completion", "params": {...}, "stream": bool}   |   {"cancel": N}
  stdout:         {"id": N, "chunk": {...}} while streaming, then {"id": N, "end": {...}};
                  {"id": N, "result": {...}} for a whole reply;  {"id": N, "error": {"status", "type", "message"}}
Requests are handled one at a time (the API sends the next only after the previous one ended).
FORGE_WORKER_FAULT=crash-load (testing only) aborts while loading.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time

from forge.llama_child import load_llama

SAMPLING = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty",
            "logit_bias")


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class BadRequest(Exception):
    pass


def grammar_for(response_format: dict | None):
    """A llama.cpp grammar for OpenAI's response_format: json_object → any JSON object, json_schema → the
    schema. None when the reply is free text."""
    if not response_format or response_format.get("type") in (None, "text"):
        return None
    from llama_cpp.llama_grammar import LlamaGrammar

    kind = response_format.get("type")
    if kind == "json_object":
        schema = response_format.get("schema") or {"type": "object"}
    elif kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("response_format.json_schema.schema must be a JSON schema object")
    else:
        raise BadRequest(f"response_format.type {kind!r} is not supported (text, json_object, json_schema)")
    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as e:  # an unsupported construct in the schema
        raise BadRequest(f"response_format schema cannot be turned into a grammar: {e}") from None


class Worker:
    def __init__(self, llm, default_max_tokens: int):
        self.llm = llm
        self.default_max_tokens = default_max_tokens
        self.cancelled: set[int] = set()
        self.inbox: queue.Queue = queue.Queue()

    def read_stdin(self) -> None:
        for line in sys.stdin:
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "cancel" in msg:
                self.cancelled.add(msg["cancel"])
            else:
                self.inbox.put(msg)
        self.inbox.put(None)  # the API closed our stdin: exit

    def kwargs(self, params: dict) -> dict:
        kw = {k: params[k] for k in SAMPLING if params.get(k) is not None}
        kw.setdefault("max_tokens", self.default_max_tokens)
        grammar = grammar_for(params.get("response_format"))
        if grammar is not None:
            kw["grammar"] = grammar
        return kw

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def handle(self, req: dict) -> None:
        rid, op, params = req["id"], req["op"], req.get("params") or {}
        kw = self.kwargs(params)
        t0 = time.perf_counter()
        if op == "chat":
            call = lambda **extra: self.llm.create_chat_completion(params["messages"], **kw, **extra)  # noqa: E731
        elif op == "completion":
            call = lambda **extra: self.llm.create_completion(params["prompt"], **kw, **extra)  # noqa: E731
        else:
            raise BadRequest(f"unknown op {op!r}")
        if not req.get("stream"):
            out = call()
            out["forge_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            _emit({"id": rid, "result": out})
            return
        text, finish, first_ms = [], None, None
        for chunk in call(stream=True):
            if rid in self.cancelled:
                finish = "cancelled"
                break
            choice = chunk["choices"][0]
            piece = (choice.get("delta") or {}).get("content") if op == "chat" else choice.get("text")
            if piece:
                text.append(piece)
                if first_ms is None:
                    first_ms = round((time.perf_counter() - t0) * 1000, 1)
            finish = choice.get("finish_reason") or finish
            _emit({"id": rid, "chunk": chunk})
        self.cancelled.discard(rid)
        _emit({"id": rid, "end": {"finish_reason": finish, "completion_tokens": self.count("".join(text)),
                                  "first_token_ms": first_ms,
                                  "forge_ms": round((time.perf_counter() - t0) * 1000, 1)}})

    def serve(self) -> None:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        while (req := self.inbox.get()) is not None:
            try:
                self.handle(req)
            except BadRequest as e:
                _emit({"id": req.get("id"), "error": {"status": 400, "type": "invalid_request_error",
                                                      "message": str(e)}})
            except ValueError as e:  # llama-cpp-python: prompt longer than the context, bad arguments
                _emit({"id": req.get("id"), "error": {"status": 400, "type": "invalid_request_error",
                                                      "message": str(e)}})
            except Exception as e:
                _emit({"id": req.get("id"), "error": {"status": 500, "type": "server_error",
                                                      "message": f"{type(e).__name__}: {e}"}})


def main() -> None:
    path, opts = sys.argv[1], json.loads(sys.argv[2])
    t0 = time.perf_counter()
    try:
        if os.environ.get("FORGE_WORKER_FAULT") == "crash-load":
            os.abort()
        llm = load_llama(path, n_ctx=opts.get("n_ctx", 2048), n_threads=opts.get("n_threads") or os.cpu_count() or 1,
                         n_gpu_layers=opts.get("n_gpu_layers", 0), seed=0)
        # Smoke test: a model that loads but cannot generate (or crashes doing so) never takes traffic.
        smoke = llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=4, temperature=0)
    except Exception as e:
        _emit({"event": "failed", "error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
    meta = llm.metadata
    _emit({"event": "ready", "load_ms": round((time.perf_counter() - t0) * 1000, 1),
           "smoke": smoke["choices"][0]["message"]["content"], "n_ctx": llm.n_ctx(),
           "metadata": {k: v for k, v in meta.items() if k.startswith("forge.") or k == "general.name"},
           "pid": os.getpid()})
    Worker(llm, opts.get("max_tokens", 512)).serve()


if __name__ == "__main__":
    main()
