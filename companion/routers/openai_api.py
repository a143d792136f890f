"""OpenAI-compatible endpoints: GET /v1/models, POST /v1/chat/completions (whole or SSE stream), POST
/v1/completions. A request's `model` picks what answers: a registered base (loaded on demand when it is not, beside
the others, up to companion.max_loaded_models), or a registered LoRA adapter (run on a loaded base it was made for,
else on its own base loaded on demand; the adapter itself loaded on demand). Any other name is answered by the
default base, whose registry id the reply carries (clients written for other servers keep working across a swap).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import time
from typing import Annotated, Any, AsyncIterator, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from companion.adapters import lookup_adapter, registered_kind
from companion.openapi import GENERATION, errors
from companion.pool import CompanionError, error_body
from companion.settings import list_models, model_loader

router = APIRouter(prefix="/v1")


# Requests are validated strictly (JSON's own types: `"stream": 0` or `"seed": false` is a 400, never guessed at);
# fields clients send that we do not use are accepted and ignored (user, metadata, …).
REQUEST = ConfigDict(extra="allow", strict=True)


def _integral(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer as JSON Schema counts one: 5 or 5.0 (JSON has one number type; many clients serialise 5.0), never
# "5", true or 5.5 (found by schemathesis: `"max_tokens": 83188.0` was a 400).
JsonInt = Annotated[int, BeforeValidator(_integral)]
PositiveJsonInt = Annotated[int, Field(gt=0), BeforeValidator(_integral)]  # constraint first: the schema keeps it


class TextPart(BaseModel):
    model_config = REQUEST
    type: Literal["text"]  # a text model serves text parts only
    text: str = ""


class Message(BaseModel):
    model_config = REQUEST
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart] | None = None

    def plain(self) -> dict:
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content or ""}


class TextFormat(BaseModel):
    model_config = REQUEST
    type: Literal["text"]


class JsonObjectFormat(BaseModel):
    """Any JSON object, or (llama.cpp's extension) one following `schema`."""

    model_config = REQUEST
    type: Literal["json_object"]
    schema_: dict | None = Field(default=None, alias="schema")


class JsonSchemaSpec(BaseModel):
    model_config = REQUEST
    name: str | None = None
    schema_: dict = Field(alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(BaseModel):
    """JSON following json_schema.schema (generation is constrained by a llama.cpp grammar)."""

    model_config = REQUEST
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class Sampling(BaseModel):
    model_config = REQUEST
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: PositiveJsonInt | None = None
    max_completion_tokens: PositiveJsonInt | None = None
    stop: str | list[str] | None = None
    seed: JsonInt | None = None  # any integer; llama.cpp takes it modulo 2**32
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    top_k: JsonInt | None = Field(default=None, ge=0)  # llama.cpp's own samplers, as llama-cpp-python's server takes
    min_p: float | None = Field(default=None, ge=0, le=1)
    repeat_penalty: float | None = Field(default=None, gt=0, le=5)
    stream: bool = False
    stream_options: dict | None = None
    n: JsonInt = Field(default=1, json_schema_extra={"minimum": 1, "maximum": 1})  # the validator says why

    @field_validator("n")
    @classmethod
    def _one(cls, v: int) -> int:
        if v != 1:
            raise ValueError("only n=1 is supported")
        return v

    def params(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_completion_tokens or self.max_tokens,
                "stop": [self.stop] if isinstance(self.stop, str) else self.stop, "seed": self.seed,
                "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty,
                "top_k": self.top_k, "min_p": self.min_p, "repeat_penalty": self.repeat_penalty}


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    response_format: ResponseFormat | None = None

    def format(self) -> dict | None:
        return self.response_format.model_dump(by_alias=True, exclude_none=True) if self.response_format else None


ONE_PROMPT = {"anyOf": [{"type": "string", "minLength": 1},
                        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "maxItems": 1}]}


class CompletionRequest(Sampling):
    prompt: Annotated[str | list[str], WithJsonSchema(ONE_PROMPT)]  # the validator gives the reasons

    @field_validator("prompt")
    @classmethod
    def _single(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("only one prompt per request is supported")
            v = v[0]
        if not v:
            raise ValueError("the prompt is empty (give the model some text to continue)")
        return v


@router.get("/models")
async def models(request: Request) -> dict:
    """The registry's models and adapters; `loaded` says which are in memory now (every loaded base; an adapter
    loaded on one of them, named by `loaded_on`), the default base first, then the other loaded ones."""
    settings = request.app.state.settings
    pool = request.app.state.pool
    default = pool.primary.id
    slots = dict(pool.slots)
    on = {a: s.id for s in slots.values() for a in s.adapters}
    rows = await asyncio.to_thread(list_models, settings.config)
    rows.sort(key=lambda m: (m["id"] != default, m["id"] not in slots))
    data = []
    for m in rows:
        prov = dict(m["meta"].get("provenance") or {})
        slot = slots.get(m["id"])
        if slot is not None and slot.current is not None and slot.current.info.get("metadata"):
            prov.update(slot.current.info["metadata"])
        created = calendar.timegm(time.strptime(m["created_at"][:19], "%Y-%m-%dT%H:%M:%S")) \
            if m.get("created_at") else 0  # stored in UTC
        adapter = (m["meta"] or {}).get("kind") == "adapter"
        if adapter:  # `parent`: the base, as vLLM lists its LoRA modules
            extra = {"kind": "adapter", "parent": m["meta"].get("base_id"), "lora": m["meta"].get("lora"),
                     "loaded": m["id"] in on, "loaded_on": on.get(m["id"])}
        else:
            extra = {"kind": "model", "loaded": slot is not None, "default": m["id"] == default}
        data.append({"id": m["id"], "object": "model", "created": created, "owned_by": "forge", **extra,
                     "name": m["name"], "quant": m["quant"], "bytes": m["bytes"], "run_id": m["run_id"],
                     "sha256": m["sha256"], "provenance": prov})
    return {"object": "list", "data": data}


@contextlib.asynccontextmanager
async def leased(request: Request, target: tuple[str | None, dict | None]) -> AsyncIterator:
    """The worker for a request's target (see route): the default base, a base, or an adapter on its base, each
    loaded on demand."""
    pool = request.app.state.pool
    base, adapter = target
    load = model_loader(request.app.state.settings)
    lease = pool.adapter_lease(adapter, load) if adapter is not None else pool.lease(base, None, load)
    async with lease as worker:
        yield worker


async def _whole(request: Request, op: str, params: dict, target: tuple = (None, None)) -> dict:
    stats = request.app.state.stats
    t0 = time.perf_counter()
    try:
        async with leased(request, target) as worker:
            model_id = params.get("adapter") or worker.model["id"]
            result = None
            async with contextlib.aclosing(worker.call(op, params, stream=False)) as messages:
                async for msg in messages:
                    result = msg.get("result")
    except CompanionError:
        stats.failed += 1
        raise
    if result is None:  # cancelled
        raise CompanionError("the request was cancelled", 499, "client_closed_request")
    gen_ms = result.pop("forge_ms", 0.0)
    result["model"] = model_id
    stats.record((time.perf_counter() - t0) * 1000, result["usage"]["completion_tokens"], gen_ms)
    return result


async def until_done_or_gone(request: Request, awaitable):
    """Await one model request (its wait in the queue, its generation). A client that hangs up meanwhile (its own
    timeout) has it cancelled instead of keeping the model busy for nobody: 499."""
    task = asyncio.ensure_future(awaitable)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, CompanionError):
                await task
            raise CompanionError("the client closed the connection", 499, "client_closed_request")


async def run_whole(request: Request, op: str, params: dict, target: tuple = (None, None)) -> dict:
    """One generation, whole reply."""
    return await until_done_or_gone(request, _whole(request, op, params, target))


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def stream_events(request: Request, op: str, params: dict, include_usage: bool,
                        target: tuple = (None, None)) -> AsyncIterator[str]:
    """The SSE events of one streamed generation. This generator owns the lease: its first item (None) means the
    model is held; the lease ends when the generation has ended, a client that left included (Worker.call stops
    the generation and waits for its end before the lease lets the next request in)."""
    stats = request.app.state.stats
    t0 = time.perf_counter()
    async with leased(request, target) as worker:
        model_id = params.get("adapter") or worker.model["id"]
        yield None
        try:
            async with contextlib.aclosing(worker.call(op, params, stream=True)) as messages:
                async for msg in messages:
                    if "chunk" in msg:
                        chunk = msg["chunk"]
                        chunk["model"] = model_id
                        yield sse(chunk)
                    elif "end" in msg:
                        end = msg["end"]
                        stats.record((time.perf_counter() - t0) * 1000, end["usage"]["completion_tokens"],
                                     end["forge_ms"])
                        if include_usage:
                            yield sse({"id": f"usage-{int(t0 * 1000)}", "object": "chat.completion.chunk"
                                       if op == "chat" else "text_completion", "created": int(time.time()),
                                       "model": model_id, "choices": [], "usage": end["usage"]})
            yield "data: [DONE]\n\n"
        except CompanionError as e:  # the stream has started: the error goes in it, in OpenAI's shape
            stats.failed += 1
            yield sse(error_body(e.message, e.type))


class EventStream(StreamingResponse):
    """SSE over a primed `stream_events` generator, which is closed however the response ends (a client gone
    before the first byte, when the body is never started, included): the lease it holds always goes back."""

    def __init__(self, events: AsyncIterator[str]):
        self.events = events
        super().__init__(self._body(), media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _body(self) -> AsyncIterator[str]:
        async for event in self.events:
            yield event

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.events.aclose()


async def run_stream(request: Request, op: str, params: dict, include_usage: bool,
                     target: tuple = (None, None)) -> StreamingResponse:
    """SSE. The lease is taken before the response starts (the generator is primed here), so a full queue is a
    real 429, not a broken stream."""
    stats = request.app.state.stats
    events = stream_events(request, op, params, include_usage, target)
    try:
        await until_done_or_gone(request, anext(events))
    except CompanionError as e:
        await events.aclose()
        if e.status != 499:
            stats.failed += 1
        raise
    return EventStream(events)


GENERATED = {200: {"description": "The reply: a whole JSON object, or with `stream` an SSE stream of chunks ending "
                                 "in `data: [DONE]`", "content": {"text/event-stream": {}}},
             **errors(*GENERATION, 404, 422)}


async def route(request: Request, name: str | None) -> tuple[str | None, dict | None]:
    """What a request's `model` names: (the base to run on, None for the default; the LoRA adapter's registry record
    or None). A loaded base or adapter is found without a registry look-up; a registered one that is not loaded is
    loaded by the lease; any other name is the default base's, as before there were several."""
    pool, settings = request.app.state.pool, request.app.state.settings
    if not name or settings.companion.backend.kind == "openai":
        return None, None
    if name in pool.slots:
        return name, None
    held = pool.loaded_adapter(name)
    if held is not None:
        return None, held
    kind = await asyncio.to_thread(registered_kind, settings.config, name)
    if kind == "model":
        return name, None
    if kind == "adapter":
        return None, await asyncio.to_thread(lookup_adapter, settings.config, name, settings.companion.verify_sha256)
    return None, None


async def generate(request: Request, op: str, params: dict, body: Sampling):
    target = await route(request, body.model)
    if target[1] is not None:
        params["adapter"] = target[1]["id"]
    if body.stream:
        return await run_stream(request, op, params, bool((body.stream_options or {}).get("include_usage")), target)
    return await run_whole(request, op, params, target)


@router.post("/chat/completions", responses=GENERATED)
async def chat_completions(body: ChatRequest, request: Request):
    params = {**body.params(), "messages": [m.plain() for m in body.messages], "response_format": body.format()}
    return await generate(request, "chat", params, body)


@router.post("/completions", responses=GENERATED)
async def completions(body: CompletionRequest, request: Request):
    params = {**body.params(), "prompt": body.prompt}
    return await generate(request, "completion", params, body)
