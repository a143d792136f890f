"""GET /health: is a model loaded, which (the default and every other loaded base), since when, and how the
requests have gone."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from fastapi import APIRouter, Request

router = APIRouter()


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None


def model_state(request: Request) -> dict:
    """The default base (`model`, its worker, its adapters), the swap in progress or the last one, and every loaded
    base (`loaded`, the default first) with the bound on them."""
    pool = request.app.state.pool
    w = pool.current
    loaded = [{**row, "loaded_at": iso(row["loaded_at"])} for row in pool.describe()]
    return {"model": w.model["id"] if w else None, "model_name": w.model.get("name") if w else None,
            "quant": w.model.get("quant") if w else None, "loaded_at": iso(w.loaded_at if w else None),
            "worker_pid": w.pid if w and w.alive else None, "provenance": (w.info.get("metadata") if w else None),
            "swap": pool.swap_state, "last_swap": pool.last_swap, "restarts": pool.restarts,
            "adapters": sorted(pool.adapters), "loaded": loaded, "max_loaded_models": pool.max_loaded,
            "loading": sorted(pool.loading), "loads": pool.loads, "evictions": pool.evictions}


@router.get("/health")
async def health(request: Request) -> dict:
    pool = request.app.state.pool
    ready = pool.ready.is_set() and pool.current is not None and pool.current.alive and not pool.primary.retired
    status = "healthy" if ready else ("restarting" if pool.problem else "loading")
    return {"status": status, **model_state(request), "problem": pool.problem,
            "queue": pool.waiting, "busy": any(s.current is not None and s.current.lock.locked()
                                               for s in pool.slots.values()),
            "uptime_s": round(time.time() - request.app.state.started, 1), **request.app.state.stats.to_json()}
