"""GET /health: is a model loaded, which, since when, and how the requests have gone."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from fastapi import APIRouter, Request

router = APIRouter()


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None


def model_state(request: Request) -> dict:
    pool = request.app.state.pool
    w = pool.current
    return {"model": w.model["id"] if w else None, "model_name": w.model.get("name") if w else None,
            "quant": w.model.get("quant") if w else None, "loaded_at": iso(w.loaded_at if w else None),
            "worker_pid": w.pid if w and w.alive else None, "provenance": (w.info.get("metadata") if w else None),
            "swap": pool.swap_state, "last_swap": pool.last_swap, "restarts": pool.restarts,
            "adapters": sorted(pool.adapters)}


@router.get("/health")
async def health(request: Request) -> dict:
    pool = request.app.state.pool
    ready = pool.ready.is_set() and pool.current is not None and pool.current.alive
    status = "healthy" if ready else ("restarting" if pool.problem else "loading")
    return {"status": status, **model_state(request), "problem": pool.problem,
            "queue": pool.waiting, "busy": bool(pool.current and pool.current.lock.locked()),
            "uptime_s": round(time.time() - request.app.state.started, 1), **request.app.state.stats.to_json()}
