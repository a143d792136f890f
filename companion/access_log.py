"""One line per request on the `forge.companion` logger: method, path, status, model, seconds. Pure ASGI, so SSE
streams pass through untouched (logged when they end). Headers are never logged (they carry the admin token)."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("forge.companion")


class AccessLog:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 0}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if scope["path"] != "/health":  # the UI polls it every second
                client = scope.get("client") or ("?", 0)
                log.info("%s %s %s %s %.2fs", client[0], scope["method"], scope["path"], status["code"] or "-",
                         time.perf_counter() - t0)
