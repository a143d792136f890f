"""OpenAI-compatible endpoints: GET /v1/models, POST /v1/chat/completions (whole or SSE stream), POST
/v1/completions. Any `model` name is accepted and answered by the loaded model, whose registry id the reply
carries (clients written for other servers keep working across a swap)."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from companion.pool import CompanionError, error_body
from companion.settings import list_models

router = APIRouter(prefix="/v1")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict] | None = None

    def plain(self) -> dict:
        content = self.content
        if isinstance(content, list):  # content parts: only text can be served by a text model
            parts = []
            for part in content:
                if part.get("type") != "text":
                    raise CompanionError(f"content part type {part.get('type')!r} is not supported (text only)",
                                         400, "invalid_request_error")
                parts.append(part.get("text") or "")
            content = "".join(parts)
        return {"role": "system" if self.role == "developer" else self.role, "content": content or ""}


class Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send fields we ignore (user, metadata, …)
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stream: bool = False
    stream_options: dict | None = None
    n: int = 1

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
                "presence_penalty": self.presence_penalty, "frequency_penalty": self.frequency_penalty}


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    response_format: dict | None = None


class CompletionRequest(Sampling):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _single(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("only one prompt per request is supported")
            return v[0]
        return v


@router.get("/models")
async def models(request: Request) -> dict:
    settings = request.app.state.settings
    pool = request.app.state.pool
    loaded = pool.current.model["id"] if pool.current else None
    rows = await asyncio.to_thread(list_models, settings.config)
    rows.sort(key=lambda m: m["id"] != loaded)
    data = []
    for m in rows:
        prov = dict(m["meta"].get("provenance") or {})
        if m["id"] == loaded and pool.current.info.get("metadata"):
            prov.update(pool.current.info["metadata"])
        created = calendar.timegm(time.strptime(m["created_at"][:19], "%Y-%m-%dT%H:%M:%S")) \
            if m.get("created_at") else 0  # stored in UTC
        data.append({"id": m["id"], "object": "model", "created": created, "owned_by": "forge",
                     "loaded": m["id"] == loaded, "name": m["name"], "quant": m["quant"], "bytes": m["bytes"],
                     "run_id": m["run_id"], "sha256": m["sha256"], "provenance": prov})
    return {"object": "list", "data": data}


async def _whole(request: Request, op: str, params: dict) -> dict:
    pool, stats = request.app.state.pool, request.app.state.stats
    t0 = time.perf_counter()
    try:
        async with pool.lease() as worker:
            model_id = worker.model["id"]
            result = None
            async for msg in worker.call(op, params, stream=False):
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


async def run_whole(request: Request, op: str, params: dict) -> dict:
    """One generation, whole reply. A client that hangs up (its own timeout) leaves the queue, or has its
    generation stopped, instead of keeping the model busy for nobody."""
    task = asyncio.ensure_future(_whole(request, op, params))
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.5)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, CompanionError):
                await task
            raise CompanionError("the client closed the connection", 499, "client_closed_request")


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


async def run_stream(request: Request, op: str, params: dict, include_usage: bool) -> StreamingResponse:
    """SSE: the lease is taken before the response starts, so a full queue is a real 429, not a broken stream."""
    pool, stats = request.app.state.pool, request.app.state.stats
    t0 = time.perf_counter()
    lease = pool.lease()
    try:
        worker = await lease.__aenter__()
    except CompanionError:
        stats.failed += 1
        raise
    model_id = worker.model["id"]

    async def events():
        try:
            async for msg in worker.call(op, params, stream=True):
                if "chunk" in msg:
                    chunk = msg["chunk"]
                    chunk["model"] = model_id
                    yield sse(chunk)
                elif "end" in msg:
                    end = msg["end"]
                    stats.record((time.perf_counter() - t0) * 1000, end["usage"]["completion_tokens"], end["forge_ms"])
                    if include_usage:
                        yield sse({"id": f"usage-{int(t0 * 1000)}", "object": "chat.completion.chunk"
                                   if op == "chat" else "text_completion", "created": int(time.time()),
                                   "model": model_id, "choices": [],
                                   "usage": end["usage"]})
            yield "data: [DONE]\n\n"
        except CompanionError as e:
            stats.failed += 1
            yield sse(error_body(e.message, e.type))
        finally:
            await lease.__aexit__(None, None, None)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    params = {**body.params(), "messages": [m.plain() for m in body.messages],
              "response_format": body.response_format}
    if body.stream:
        return await run_stream(request, "chat", params, bool((body.stream_options or {}).get("include_usage")))
    return await run_whole(request, "chat", params)


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request):
    params = {**body.params(), "prompt": body.prompt}
    if body.stream:
        return await run_stream(request, "completion", params, bool((body.stream_options or {}).get("include_usage")))
    return await run_whole(request, "completion", params)
