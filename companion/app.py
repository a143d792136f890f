"""`create_app(settings)`: the FastAPI companion. The models live in worker processes owned by the ModelPool (one
per loaded base); this process only routes, queues and counts."""

from __future__ import annotations

import asyncio
import contextlib
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from companion.pool import CompanionError, ModelPool, error_body
from companion.settings import Settings, lookup_model
from companion.stats import Stats
from forge.errors import format_validation_error, validation_key


async def start_pool(app: FastAPI) -> dict:
    """Load the settings' model in a worker and hang the pool on the app. Raises CompanionError."""
    settings = app.state.settings
    pool = ModelPool(settings.worker_options(), settings.companion.max_queue, settings.companion.queue_timeout_s,
                     settings.companion.drain_timeout_s, settings.worker_env, settings.exclusive_warmup,
                     max_loaded=settings.companion.max_loaded_models)
    record = await asyncio.to_thread(lookup_model, settings.config, settings.model, settings.companion.verify_sha256)
    info = await pool.start(record)
    app.state.pool = pool
    return info


def methods_of(routes, scope) -> set[str]:
    """Every method some route answers at the scope's path, through FastAPI's included routers (ours are
    included without a further prefix, so each route's own pattern is the path it answers)."""
    from starlette.routing import Match

    allowed: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            allowed |= methods_of(inner.routes, scope)
        elif getattr(route, "methods", None) and route.matches(scope)[0] != Match.NONE:
            allowed |= set(route.methods)
    return allowed


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.pool is None:  # `forge serve` starts the pool first (clean errors)
            await start_pool(app)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="forge companion", version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.pool = None
    app.state.stats = Stats()
    app.state.started = time.time()

    from companion.access_log import AccessLog

    app.add_middleware(AccessLog)
    if settings.companion.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.companion.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(CompanionError)
    async def companion_error(request: Request, exc: CompanionError):
        return JSONResponse(error_body(exc.message, exc.type), exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        param = validation_key(exc) or None
        return JSONResponse(error_body(format_validation_error(exc, None if param else "body"),
                                       "invalid_request_error", param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        type_ = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
            exc.status_code, "invalid_request_error")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # Starlette's Allow names the first route of the path only (GET and POST
            # /admin/adapters are two routes; found by schemathesis): name every method the path answers
            allowed = methods_of(request.app.router.routes, request.scope)
            if allowed:
                headers["Allow"] = ", ".join(sorted(allowed))
        return JSONResponse(error_body(str(exc.detail), type_), exc.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        # A bug: still OpenAI's shape for the client; Starlette logs the traceback after this answer.
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}"[:500], "server_error"), 500)

    from companion.routers import admin, health, openai_api, tasks

    app.include_router(openai_api.router)
    app.include_router(health.router)
    app.include_router(tasks.router)
    app.include_router(admin.router)
    return app
