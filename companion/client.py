"""Talking to a running companion over HTTP, for `forge swap` and the TUI. Light: httpx only."""

from __future__ import annotations

from forge.config import Config


class AdminRequestError(Exception):
    """An admin request (a swap, adding an adapter) was not carried out; the message says why in one line."""


class SwapError(AdminRequestError):
    """The swap was not made; the message says why in one line."""


def companion_url(config: Config, port: int | None = None) -> str:
    """Where a client reaches the companion configured in `config` (a wildcard bind is reached on loopback)."""
    host = config.companion.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    return f"http://{host}:{port or config.companion.port}"


def _admin_post(config: Config, path: str, payload: dict, what: str, url: str | None, timeout: float,
                error: type[AdminRequestError]) -> dict:
    """POST an admin request with the workspace's admin token; the JSON reply, or `error` with the reason."""
    import httpx

    from companion.settings import admin_token

    token = admin_token(config)
    if not token:
        raise error("no admin token: set FORGE_ADMIN_TOKEN or companion.admin_token, or start `forge serve` "
                    "once (it writes one into the workspace)")
    base = url or companion_url(config)
    try:
        r = httpx.post(f"{base}{path}", json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
    except httpx.HTTPError as e:
        raise error(f"cannot reach the companion at {base}: {e} (is `forge serve` running?)") from None
    try:
        body = r.json()
    except ValueError:
        body = {"error": {"message": r.text[:200]}}
    if r.status_code != 200:
        raise error(f"{what} refused ({r.status_code}): {(body.get('error') or {}).get('message', body)}")
    return body


def request_swap(config: Config, model_id: str, url: str | None = None, timeout: float = 900) -> dict:
    """POST /admin/reload-model with the workspace's admin token; the swap result, or SwapError."""
    return _admin_post(config, "/admin/reload-model", {"model_id": model_id}, f"swap to {model_id}", url, timeout,
                       SwapError)


def request_adapter(config: Config, adapter_id: str, url: str | None = None, timeout: float = 300) -> dict:
    """POST /admin/adapters: load a registered LoRA adapter on its base (no base reload; the base loaded on demand
    when it is not); the result ({adapter_id, base, loaded, …}), or AdminRequestError."""
    return _admin_post(config, "/admin/adapters", {"adapter_id": adapter_id}, f"adding adapter {adapter_id}", url,
                       timeout, AdminRequestError)
