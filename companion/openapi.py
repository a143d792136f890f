"""What the OpenAPI schema says about errors: every status a route can answer, each in OpenAI's error shape.
Routes declare theirs with `responses=errors(...)`; tests/companion/test_api_fuzz.py holds the server to it."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""

    error: ErrorDetail


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}}

WHY = {
    400: ("The request is malformed: a field is missing, of the wrong type or out of range (error.param names "
          "it), or the model cannot serve it (prompt too long, unsupported response_format)"),
    401: "Missing or wrong admin token (Authorization: Bearer <token>)",
    403: "Admin is accepted from loopback clients only (companion.allow_remote_admin)",
    404: ("No such model in the registry, no such task, or `model` names a LoRA adapter that is being removed"),
    409: ("A swap is already in progress, or the external engine serves one model at a time and cannot be swapped "
          "from here"),
    422: ("The model file is missing, changed since export, or failed to load or to pass its smoke test (for a "
          "request: the base or adapter its `model` names, loaded on demand); or an adapter made for another base"),
    429: "Too many requests are already waiting for the model (companion.max_queue); retry after Retry-After",
    499: "The client closed the connection before the reply (logged; nobody reads it)",
    500: "The model worker crashed during this request; a new one is starting, retry the request",
    502: ("The model's reply does not follow the task's schema, or the external engine (companion.backend kind "
          "openai) failed or could not be reached"),
    503: ("Timed out waiting for the model (companion.queue_timeout_s): busy, restarting, or every loaded base "
          "stayed busy while another waited to load (companion.max_loaded_models)"),
    504: "The generation ran past companion.request_timeout_s; the worker was restarted",
}

GENERATION = (400, 429, 499, 500, 502, 503, 504)  # every route that runs the model


def errors(*codes: int) -> dict:
    """A route's `responses=` for these error statuses."""
    out = {}
    for code in codes:
        out[code] = {"model": ErrorBody, "description": WHY[code]}
        if code in (429, 503):
            out[code]["headers"] = RETRY_AFTER
    return out
