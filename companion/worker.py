"""The model worker: one child process per loaded model, `python -m companion.worker MODEL_PATH OPTIONS_JSON`.

llama.cpp runs only here, never in the API process: a segfault or abort inside it ends this process, which the
API turns into an error response for the request in flight and a fresh worker for the next one.

Protocol, one JSON object per line:
  stdout:         {"event": "loaded", "load_ms"}; then, after "smoke" on stdin, {"event": "ready", "load_ms",
                  "smoke", "metadata", "n_ctx"}; or at any point {"event": "failed", "error"}
  stdin:          {"id": N, "op": "chat" | "completion", "params": {...}, "stream": bool}   |   {"cancel": N}
  stdout:         {"id": N, "chunk": {...}} while streaming, then {"id": N, "end": {...}};
                  {"id": N, "result": {...}} for a whole reply;  {"id": N, "error": {"status", "type", "message"}}
                  {"id": N, "op": "adapter_add", "params": {"adapter_id", "path"}} | {"op": "adapter_remove",
                  "params": {"adapter_id"}}: LoRA adapters loaded on this base (llama_adapter_lora_init); a chat or
                  completion whose params carry "adapter" runs with that one applied, none without.
Requests are handled one at a time (the API sends the next only after the previous one ended).
FORGE_WORKER_FAULT=crash-smoke:TEXT (testing only) aborts in the smoke test of a model whose path contains TEXT (a
crash inside llama.cpp looks the same from outside).
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time

from forge import cpu_threads
from forge.models.llama_child import (DECODING_KEY, GREEDY, adapter_metadata, apply_lora, decoding_defaults,
                                       gguf_chat_formatter, load_llama, load_lora, provenance, sampling,
                                       streamed_tail)

SAMPLING = ("temperature", "top_p", "max_tokens", "stop", "seed", "presence_penalty", "frequency_penalty")
"""The OpenAI request fields a remote engine is sent (companion.remote_worker); a local model also takes llama.cpp's
top_k, min_p and repeat_penalty, and its own defaults (forge.decoding) for what a request leaves out."""


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def read_requests(inbox: queue.Queue, cancelled: set) -> None:
    """The API's side of the pipe, until it closes: requests go to `inbox`, cancels into `cancelled` (checked by
    the generation between tokens); None in the inbox means exit. Shared by every worker module."""
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "cancel" in msg:
            cancelled.add(msg["cancel"])
        else:
            inbox.put(msg)
    inbox.put(None)  # the API closed our stdin: exit


class BadRequest(Exception):
    pass


class AdapterNotLoaded(Exception):
    pass


class Adapters:
    """LoRA adapters loaded once on the base; at most one applied at a time.

    The KV cache holds keys and values computed with the weights of the adapter that was applied, so a switch
    must not reuse it. Rather than clearing it (every switch then re-reads the whole prompt, the chat template's
    system prefix included: ~100 ms on this CPU), a switch keeps the outgoing adapter's sequence state
    (llama_state_seq_get_data: the KV cells it used and their tokens) and restores the incoming one's, so a
    request reuses the prompt prefix its own adapter computed, as consecutive requests on one adapter do. States
    are kept for the KEEP most recently used adapters (the base counts as one); each is a few MB."""

    KEEP = 4

    def __init__(self, llm):
        self.llm = llm
        self.loaded: dict[str, object] = {}  # adapter id → llama_adapter_lora pointer
        self.decoding: dict[str, dict] = {}  # adapter id → the decoding defaults its GGUF carries (forge.decoding)
        self.active: str | None = None
        self.states: dict[str | None, tuple] = {}  # adapter id (None: the base) → (buffer, size, tokens, canon), LRU

    def add(self, adapter_id: str, path: str) -> None:
        if adapter_id in self.loaded:
            return
        ptr = load_lora(self.llm, path)
        if not ptr:  # llama.cpp logs why: wrong architecture, a tensor whose shape does not fit this base, …
            raise BadRequest(f"llama.cpp could not load adapter {adapter_id} on this base ({path})")
        self.loaded[adapter_id] = ptr
        self.decoding[adapter_id] = decoding_defaults(adapter_metadata(ptr, [DECODING_KEY]))

    def remove(self, adapter_id: str) -> None:
        import llama_cpp

        ptr = self.loaded.pop(adapter_id, None)
        if ptr is None:
            return
        self.decoding.pop(adapter_id, None)
        if self.active == adapter_id:
            self.apply(None)
        self.states.pop(adapter_id, None)
        llama_cpp.llama_adapter_lora_free(ptr)

    def _save(self) -> None:
        """The active adapter's sequence (KV cells and tokens), kept for when it is applied again."""
        import ctypes

        import llama_cpp

        self.states.pop(self.active, None)
        n = self.llm.n_tokens
        if not n:
            return
        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        got = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        if got:
            self.states[self.active] = (buf, got, self.llm.input_ids[:n].copy(), getattr(self.llm, "canon", 0))
            while len(self.states) > self.KEEP:
                self.states.pop(next(iter(self.states)))

    def _clear(self) -> None:
        """An empty KV cache, and llama-cpp-python told so (no prompt prefix to reuse)."""
        import llama_cpp

        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.llm._ctx.ctx), True)
        self.llm.reset()

    def _restore(self, adapter_id: str | None) -> None:
        """The KV cache as `adapter_id` left it, or empty."""
        import llama_cpp

        self._clear()
        state = self.states.pop(adapter_id, None)
        if state is None:
            return
        buf, size, tokens, canon = state
        if llama_cpp.llama_state_seq_set_data(self.llm._ctx.ctx, buf, size, 0) != size:  # refused: start afresh
            self._clear()
            return
        self.llm.input_ids[:len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)  # generate() reuses the longest common prefix and re-reads the rest
        self.llm.canon = canon  # and only as far as it was computed in the batches a fresh prompt gets

    def apply(self, adapter_id: str | None) -> None:
        if adapter_id == self.active:
            return
        if adapter_id is not None and adapter_id not in self.loaded:
            raise AdapterNotLoaded(f"adapter {adapter_id} is not loaded")
        self._save()
        rc = apply_lora(self.llm, None if adapter_id is None else self.loaded[adapter_id])
        if rc != 0:
            self.states.clear()
            self._clear()
            raise RuntimeError(f"llama_set_adapters_lora returned {rc}")
        self._restore(adapter_id)
        self.active = adapter_id


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
        self.formatter = gguf_chat_formatter(llm)  # to count prompt tokens
        self.default_max_tokens = default_max_tokens
        self.cancelled: set[int] = set()
        self.inbox: queue.Queue = queue.Queue()
        self.adapters = Adapters(llm)
        self.decoding = decoding_defaults(provenance(llm)) or GREEDY  # the model's own, else greedy (as Eval)

    def read_stdin(self) -> None:
        read_requests(self.inbox, self.cancelled)

    def kwargs(self, params: dict) -> dict:
        """Sampling for a request: the decoding defaults of the model (or of the applied adapter, when it carries
        its own), with the request's settings on top (forge.models.llama_child.sampling, which Eval calls too)."""
        kw = sampling(self.adapters.decoding.get(self.adapters.active) or self.decoding, params)
        kw.update({k: params[k] for k in ("max_tokens", "stop") if params.get(k) is not None})
        kw.setdefault("max_tokens", self.default_max_tokens)
        grammar = grammar_for(params.get("response_format"))
        if grammar is not None:
            kw["grammar"] = grammar
        return kw

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0

    def prompt_tokens(self, op: str, params: dict) -> int:
        if op == "completion":
            return len(self.llm.tokenize(params["prompt"].encode("utf-8"), add_bos=True, special=False))
        if self.formatter is not None:
            text = self.formatter(messages=params["messages"]).prompt
            return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        return self.count("".join(m.get("content") or "" for m in params["messages"]))

    def handle(self, req: dict) -> None:
        """Every generation streams inside the worker, so a cancel (client gone) stops it between tokens; a
        whole reply is assembled here in OpenAI's shape."""
        rid, op, params, stream = req["id"], req["op"], req.get("params") or {}, bool(req.get("stream"))
        if op in ("adapter_add", "adapter_remove"):
            t0 = time.perf_counter()
            if op == "adapter_add":
                self.adapters.add(params["adapter_id"], params["path"])
            else:
                self.adapters.remove(params["adapter_id"])
            _emit({"id": rid, "result": {"loaded": sorted(self.adapters.loaded),
                                         "forge_ms": round((time.perf_counter() - t0) * 1000, 1)}})
            return
        self.adapters.apply(params.get("adapter"))
        kw = self.kwargs(params)
        t0 = time.perf_counter()
        if op == "chat":
            chunks = self.llm.create_chat_completion(params["messages"], stream=True, **kw)
        elif op == "completion":
            if not self.prompt_tokens(op, params):  # llama.cpp asserts on an empty prompt (a 500, found by fuzzing)
                raise BadRequest("the prompt is empty: it has no tokens for the model to continue")
            chunks = self.llm.create_completion(params["prompt"], stream=True, **kw)
        else:
            raise BadRequest(f"unknown op {op!r}")
        text, finish, head, last = [], None, None, None
        for chunk in chunks:
            if rid in self.cancelled:
                finish = "cancelled"
                break
            head = head or chunk
            choice = chunk["choices"][0]
            piece = (choice.get("delta") or {}).get("content") if op == "chat" else choice.get("text")
            if choice.get("finish_reason"):
                finish, last = choice["finish_reason"], chunk  # sent after the rest, below
                continue
            if piece is not None and not getattr(self.llm, "generating", True):
                continue  # llama-cpp-python's tail, decoded token by token and lossy: the rest comes whole below
            if piece:
                text.append(piece)
            if stream:
                _emit({"id": rid, "chunk": chunk})
        self.cancelled.discard(rid)
        if finish != "cancelled":
            stops = kw.get("stop") or []
            stops = [stops] if isinstance(stops, str) else list(stops)
            if op == "chat" and self.formatter is not None:  # the template's end of turn: llama.cpp stops there too
                stops.append(self.formatter.eos_token)  # (what its formatter returns as `stop`, for any messages)
            tail = streamed_tail(self.llm, "".join(text), stops)
            if tail:
                text.append(tail)
                if stream:
                    delta = {"delta": {"content": tail}} if op == "chat" else {"text": tail}
                    _emit({"id": rid, "chunk": {**(head or {}), "choices": [
                        {"index": 0, **delta, "logprobs": None, "finish_reason": None}]}})
        if stream and last is not None:
            _emit({"id": rid, "chunk": last})
        content = "".join(text)
        usage = {"prompt_tokens": self.prompt_tokens(op, params), "completion_tokens": self.count(content)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        ms = round((time.perf_counter() - t0) * 1000, 1)
        if stream or finish == "cancelled":
            _emit({"id": rid, "end": {"finish_reason": finish, "usage": usage, "forge_ms": ms}})
            return
        head = head or {"id": f"cmpl-{rid}", "created": int(time.time())}
        if op == "chat":
            choice = {"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None,
                      "finish_reason": finish}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": content, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        _emit({"id": rid, "result": {"id": head["id"], "object": obj, "created": head["created"], "choices": [choice],
                                     "usage": usage, "forge_ms": ms}})

    def serve(self) -> None:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        while (req := self.inbox.get()) is not None:
            try:
                self.handle(req)
            except AdapterNotLoaded as e:
                _emit({"id": req.get("id"), "error": {"status": 404, "type": "model_not_found", "message": str(e)}})
            except (BadRequest, ValueError) as e:  # ValueError: llama-cpp-python's prompt-too-long, bad arguments
                _emit({"id": req.get("id"), "error": {"status": 400, "type": "invalid_request_error",
                                                      "message": str(e)}})
            except Exception as e:
                _emit({"id": req.get("id"), "error": {"status": 500, "type": "server_error",
                                                      "message": f"{type(e).__name__}: {e}"}})


def main() -> None:
    path, opts = sys.argv[1], json.loads(sys.argv[2])
    t0 = time.perf_counter()
    try:
        llm = load_llama(path, n_ctx=opts.get("n_ctx", 2048), n_threads=opts.get("n_threads") or cpu_threads(),
                         n_gpu_layers=opts.get("n_gpu_layers", 0), seed=0)
    except Exception as e:
        _emit({"event": "failed", "error": f"{type(e).__name__}: {e}"})
        sys.exit(1)
    adapters = Adapters(llm)
    try:  # the adapters the pool serves come along to a restarted or swapped-in worker, before it takes traffic
        for adapter_id, adapter_path in (opts.get("adapters") or {}).items():
            adapters.add(adapter_id, adapter_path)
    except BadRequest as e:
        _emit({"event": "failed", "error": str(e)})
        sys.exit(1)
    load_ms = round((time.perf_counter() - t0) * 1000, 1)
    # Loaded. The smoke test computes with every thread, so the API may first pause the worker it replaces (on a
    # small CPU two generating workers slow each other down many times over): wait for its go.
    _emit({"event": "loaded", "load_ms": load_ms})
    if sys.stdin.readline().strip() != "smoke":
        sys.exit(0)
    t1 = time.perf_counter()
    fault, _, needle = os.environ.get("FORGE_WORKER_FAULT", "").partition(":")
    if fault == "crash-smoke" and needle and needle in path:
        os.abort()
    try:  # a model that loads but cannot generate (or crashes doing so) never takes traffic
        smoke = llm.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=4, temperature=0)
    except Exception as e:
        _emit({"event": "failed", "error": f"smoke test: {type(e).__name__}: {e}"})
        sys.exit(1)
    _emit({"event": "ready", "load_ms": load_ms, "smoke_ms": round((time.perf_counter() - t1) * 1000, 1),
           "smoke": smoke["choices"][0]["message"]["content"], "n_ctx": llm.n_ctx(),
           "metadata": provenance(llm), "adapters": sorted(adapters.loaded),
           "pid": os.getpid()})
    worker = Worker(llm, opts.get("max_tokens", 512))
    worker.adapters = adapters
    worker.serve()


if __name__ == "__main__":
    main()
