"""Task endpoints from config (companion.tasks): POST /api/<name> {"text": ...} → JSON that follows the task's
schema. Generation is constrained to the schema by a llama.cpp grammar, and the result is validated with
jsonschema before it is returned (a reply cut short by max_tokens is a 502, never half an object)."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from companion.openapi import GENERATION, errors
from companion.pool import CompanionError
from companion.routers.openai_api import JsonInt, PositiveJsonInt, run_whole

router = APIRouter(prefix="/api")


class TaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(min_length=1)


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str = Field(min_length=1)
    system: str | None = None
    max_tokens: PositiveJsonInt | None = None
    temperature: float = Field(default=0.0, ge=0, le=2)
    seed: JsonInt | None = None  # any integer; llama.cpp takes it modulo 2**32


@router.post("/generate", responses=errors(*GENERATION))
async def generate(body: GenerateRequest, request: Request) -> dict:
    """The plain endpoint for clients that are not OpenAI clients: one prompt in (rendered with the model's chat
    template), the text out."""
    t0 = time.perf_counter()
    messages = ([{"role": "system", "content": body.system}] if body.system else []) + [
        {"role": "user", "content": body.prompt}]
    result = await run_whole(request, "chat", {"messages": messages, "max_tokens": body.max_tokens,
                                               "temperature": body.temperature, "seed": body.seed})
    choice = result["choices"][0]
    return {"text": choice["message"]["content"], "finish_reason": choice["finish_reason"], "model": result["model"],
            "usage": result["usage"], "latency_ms": round((time.perf_counter() - t0) * 1000, 1)}


@router.get("")
async def list_tasks(request: Request) -> dict:
    tasks = request.app.state.settings.companion.tasks
    return {"tasks": {name: {"system": t.system, "schema": t.schema_} for name, t in tasks.items()}}


@router.post("/{task}", responses=errors(*GENERATION, 404, 502))
async def run_task(task: str, body: TaskRequest, request: Request, response: Response) -> dict:
    import jsonschema

    spec = request.app.state.settings.companion.tasks.get(task)
    if spec is None:
        known = ", ".join(sorted(request.app.state.settings.companion.tasks)) or "none"
        raise CompanionError(f"no task {task!r} (configured: {known})", 404, "not_found_error")
    t0 = time.perf_counter()
    result = await run_whole(request, "chat", {
        "messages": [{"role": "system", "content": spec.system}, {"role": "user", "content": body.text}],
        "max_tokens": spec.max_tokens, "temperature": spec.temperature, "seed": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": task, "schema": spec.schema_}}})
    text = result["choices"][0]["message"]["content"] or ""
    try:
        value = json.loads(text)
        jsonschema.validate(value, spec.schema_)
    except (json.JSONDecodeError, jsonschema.ValidationError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else e.message
        cut = " (the reply hit max_tokens)" if result["choices"][0].get("finish_reason") == "length" else ""
        raise CompanionError(f"the model's reply does not follow the {task} schema{cut}: {reason}", 502,
                             "invalid_model_output")
    response.headers["X-Forge-Model"] = result["model"]
    response.headers["X-Forge-Latency-Ms"] = f"{(time.perf_counter() - t0) * 1000:.0f}"
    return value
