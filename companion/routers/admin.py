"""Admin: GET /admin/model, POST /admin/reload-model {"model_id": ...}, GET/POST /admin/adapters {"adapter_id"} and
DELETE /admin/adapters/{adapter_id}. Bearer token compared in constant time;
loopback clients only unless companion.allow_remote_admin; registry ids only, never paths."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

from fastapi import APIRouter, Depends, HTTPException, Request, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from companion.adapters import lookup_adapter
from companion.openapi import errors
from companion.pool import CompanionError
from companion.routers.health import model_state
from companion.settings import check_model_id, model_loader, remember_served


def is_loopback(host: str | None) -> bool:
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


bearer = HTTPBearer(auto_error=False, description="The admin token: companion.admin_token, else $FORGE_ADMIN_TOKEN, "
                                                  "else the file <workspace>/companion/admin_token")


def require_admin(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
    settings = request.app.state.settings
    client = request.client.host if request.client else None  # the socket's peer, never a forwarded header
    if not settings.companion.allow_remote_admin and not is_loopback(client):
        raise HTTPException(403, f"admin is only accepted from loopback clients (this one is {client}); "
                                 "set companion.allow_remote_admin to change that")
    expected = settings.admin_token or ""
    if not (credentials and expected
            and hmac.compare_digest(credentials.credentials.strip().encode(), expected.encode())):
        raise HTTPException(401, "missing or wrong admin token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})


class AdminRoute(APIRoute):
    """Checks the admin token before anything else: FastAPI parses the body before it runs dependencies, so a
    request without the token and with a broken body was answered 400, telling an unauthenticated client about
    the route (found by schemathesis). The `Depends(require_admin)` on each route stays: it puts the bearer
    scheme in the OpenAPI schema."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def guarded(request: Request):
            require_admin(request, await bearer(request))
            return await handler(request)

        return guarded


router = APIRouter(prefix="/admin", route_class=AdminRoute)


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    # checked by check_model_id (its message says what an id is); the pattern tells clients the same
    model_id: str = Field(json_schema_extra={"pattern": r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"})


@router.get("/model", dependencies=[Depends(require_admin)], responses=errors(401, 403))
async def current_model(request: Request) -> dict:
    return model_state(request)


@router.post("/reload-model", dependencies=[Depends(require_admin)],
             responses=errors(400, 401, 403, 404, 409, 422, 502))
async def reload_model(body: ReloadRequest, request: Request) -> dict:
    """Make a registered model the default base, blue/green: loaded beside the others and smoke-tested, then the
    old default drains and is unloaded."""
    settings = request.app.state.settings
    pool = request.app.state.pool
    check_model_id(body.model_id, remote=settings.companion.backend.kind == "openai")
    result = await pool.swap(body.model_id, model_loader(settings))  # registry look-up and file check inside
    await asyncio.to_thread(remember_served, settings.config, body.model_id)
    return result


class AdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    adapter_id: str = Field(json_schema_extra={"pattern": r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"})


@router.get("/adapters", dependencies=[Depends(require_admin)], responses=errors(401, 403))
async def list_adapters(request: Request) -> dict:
    """The adapters loaded on each base (`base`: the default one)."""
    pool = request.app.state.pool
    return {"base": pool.primary.id,
            "adapters": [{"adapter_id": i, "base": s.id, "path": a["path"], "removing": i in s.removing,
                          "provenance": (a.get("meta") or {}).get("provenance")}
                         for s in pool.loaded() for i, a in s.adapters.items()]}


@router.post("/adapters", dependencies=[Depends(require_admin)],
             responses=errors(400, 401, 403, 404, 422, 429, 503))
async def add_adapter(body: AdapterRequest, request: Request) -> dict:
    """Load a registered LoRA adapter on a loaded base it was made for without reloading it, or on its own base
    loaded on demand; requests whose `model` is the adapter's id then run with it applied (a request loads it on
    demand too)."""
    settings = request.app.state.settings
    if settings.companion.backend.kind == "openai":
        raise CompanionError("adapters are served by the local llama.cpp backend only", 400, "invalid_request_error")
    check_model_id(body.adapter_id)
    record = await asyncio.to_thread(lookup_adapter, settings.config, body.adapter_id,
                                     settings.companion.verify_sha256)
    return await request.app.state.pool.add_adapter(record, model_loader(settings))


@router.delete("/adapters/{adapter_id}", dependencies=[Depends(require_admin)], responses=errors(401, 403, 404))
async def remove_adapter(adapter_id: str, request: Request) -> dict:
    """Stop routing requests to the adapter; those already admitted finish with it; then it is freed."""
    return await request.app.state.pool.remove_adapter(adapter_id)
