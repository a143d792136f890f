"""Talking to a running companion over HTTP, for `forge swap` and the TUI. Light: httpx only."""

from __future__ import annotations

from forge.config import Config


class SwapError(Exception):
    """The swap was not made; the message says why in one line."""


def companion_url(config: Config, port: int | None = None) -> str:
    """Where a client reaches the companion configured in `config` (a wildcard bind is reached on loopback)."""
    host = config.companion.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://{host}:{port or config.companion.port}"


def request_swap(config: Config, model_id: str, url: str | None = None, timeout: float = 900) -> dict:
    """POST /admin/reload-model with the workspace's admin token; the swap result, or SwapError."""
    import httpx

    from companion.settings import admin_token

    token = admin_token(config)
    if not token:
        raise SwapError("no admin token: set FORGE_ADMIN_TOKEN or companion.admin_token, or start `forge serve` "
                        "once (it writes one into the workspace)")
    base = url or companion_url(config)
    try:
        r = httpx.post(f"{base}/admin/reload-model", json={"model_id": model_id},
                       headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except httpx.HTTPError as e:
        raise SwapError(f"cannot reach the companion at {base}: {e} (is `forge serve` running?)") from None
    try:
        body = r.json()
    except ValueError:
        body = {"error": {"message": r.text[:200]}}
    if r.status_code != 200:
        raise SwapError(f"swap to {model_id} refused ({r.status_code}): "
                        f"{(body.get('error') or {}).get('message', body)}")
    return body
