"""Companion settings: the `companion` section of config.json plus what the server needs at start (workspace,
admin token, the model to serve), and the registry look-ups that turn a model id into a file."""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from forge.config import CompanionConfig, Config
from forge.store import MODEL_ID_RE
from companion.pool import CompanionError, WorkerOptions

MODEL_ID = MODEL_ID_RE


@dataclass
class Settings:
    config: Config
    admin_token: str
    model: str = "base"
    worker_env: dict = field(default_factory=dict)
    worker_module: str = "companion.worker"  # the tests' scripted stand-in takes its place (same pipe protocol)

    def __post_init__(self) -> None:
        b = self.config.companion.backend
        if b.kind == "openai":  # no model here: a worker that forwards to the engine, same protocol
            if self.worker_module == "companion.worker":
                self.worker_module = "companion.remote_worker"
            self.worker_env = {**self.worker_env, "FORGE_BACKEND_URL": b.base_url,
                               "FORGE_BACKEND_KEY_ENV": b.api_key_env or "",
                               "FORGE_BACKEND_TIMEOUT": str(self.config.companion.request_timeout_s)}

    @property
    def companion(self) -> CompanionConfig:
        return self.config.companion

    @property
    def exclusive_warmup(self) -> bool:
        mode = self.companion.exclusive_warmup
        return mode == "on" or (mode == "auto" and self.companion.n_gpu_layers == 0)

    def worker_options(self) -> WorkerOptions:
        c = self.companion
        return WorkerOptions(n_ctx=c.n_ctx, n_threads=c.n_threads, n_gpu_layers=c.n_gpu_layers,
                             max_tokens=c.max_tokens, load_timeout_s=c.load_timeout_s,
                             request_timeout_s=c.request_timeout_s, module=self.worker_module)

    @classmethod
    def from_config(cls, config: Config, model: str | None = None, **worker_env) -> "Settings":
        return cls(config=config, admin_token=admin_token(config, create=True),
                   model=model or model_to_serve(config, None)[0], worker_env=worker_env)


def token_file(config: Config) -> Path:
    return config.workspace_path() / "companion" / "admin_token"


def admin_token_and_source(config: Config, create: bool = False) -> tuple[str | None, str]:
    """The admin bearer token and where it comes from: config, else $FORGE_ADMIN_TOKEN, else the workspace's
    token file (created with mode 600 when `create`)."""
    if config.companion.admin_token:
        return config.companion.admin_token, "config companion.admin_token"
    if os.environ.get("FORGE_ADMIN_TOKEN"):
        return os.environ["FORGE_ADMIN_TOKEN"], "$FORGE_ADMIN_TOKEN"
    path = token_file(config)
    if path.exists():
        return path.read_text().strip() or None, str(path)
    if not create:
        return None, str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, str(path)


def admin_token(config: Config, create: bool = False) -> str | None:
    return admin_token_and_source(config, create)[0]


def state_file(config: Config) -> Path:
    return config.workspace_path() / "companion" / "served_model"


def remember_served(config: Config, model_id: str) -> None:
    """After a swap: the model `forge serve` starts with next time (unless --model says otherwise)."""
    path = state_file(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(model_id + "\n")
    os.replace(tmp, path)


def model_to_serve(config: Config, explicit: str | None) -> tuple[str, str]:
    """(model id, why): --model, else the model last swapped to in this workspace (if still registered and the
    config names the default), else config companion.model."""
    if explicit:
        return explicit, "--model"
    path = state_file(config)
    if path.exists():
        last = path.read_text().strip()
        if last and MODEL_ID.match(last):
            from forge.store import Store

            store = Store.for_workspace(config.workspace_path())
            try:
                if store.get_model(last, missing_ok=True):
                    return last, f"the model last swapped to (in {path}); --model {config.companion.model} to change"
            finally:
                store.close()
    return config.companion.model, "companion.model"


REMOTE_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$")  # vLLM "org/name", Ollama "name:tag"


def check_model_id(model_id, remote: bool = False) -> str:
    if remote:
        if not isinstance(model_id, str) or not REMOTE_MODEL.match(model_id):
            raise CompanionError("model_id must be a model name the engine lists at GET /v1/models", 400,
                                 "invalid_request_error")
        return model_id
    if not isinstance(model_id, str) or not MODEL_ID.match(model_id) or ".." in model_id:
        raise CompanionError("model_id must be a registry id as listed by GET /v1/models (letters, digits, . _ -), "
                             "never a path", 400, "invalid_request_error")
    return model_id


def lookup_model(config: Config, model_id: str, verify: bool = True) -> dict:
    """The registry record of `model_id`, its file checked (exists, size, sha256). Runs in a thread. With an
    external engine (companion.backend kind openai): the engine's model of that name."""
    if config.companion.backend.kind == "openai":
        return remote_model(config, model_id)
    from forge.models.export import register_bundled_base
    from forge.store import Store, sha256_file

    check_model_id(model_id)
    store = Store.for_workspace(config.workspace_path())
    try:
        if model_id == "base":
            register_bundled_base(store, config)
        record = store.get_model(model_id, missing_ok=True)
    finally:
        store.close()
    if record is None:
        raise CompanionError(f"no model {model_id!r} in the registry (forge models lists them)", 404,
                             "model_not_found")
    path = Path(record["path"])
    if not path.is_file():
        raise CompanionError(f"model {model_id}: file {path} is missing", 422, "model_load_failed")
    if record.get("bytes") and path.stat().st_size != record["bytes"]:
        raise CompanionError(f"model {model_id}: {path} is {path.stat().st_size} bytes, the registry says "
                             f"{record['bytes']}: the file changed since export", 422, "model_load_failed")
    if verify and record.get("sha256") and sha256_file(path) != record["sha256"]:
        raise CompanionError(f"model {model_id}: {path} does not match its registered sha256 (corrupted or "
                             "replaced)", 422, "model_load_failed")
    return record


def model_loader(settings: Settings):
    """The pool's `load`: model id → its checked registry record (lookup_model, in a thread), for a swap or a base
    loaded on demand. An adapter is no base to serve: 422 saying what to do instead."""
    import asyncio

    async def load(model_id: str) -> dict:
        record = await asyncio.to_thread(lookup_model, settings.config, model_id, settings.companion.verify_sha256)
        meta = record.get("meta") or {}
        if meta.get("kind") == "adapter":
            raise CompanionError(f"{model_id} is a LoRA adapter of {meta.get('base_id')}: serve that base and POST "
                                 "/admin/adapters to add it, or name the adapter in a request", 422,
                                 "model_load_failed")
        return record

    return load


def _engine_headers(env_name: str | None) -> dict:
    key = os.environ.get(env_name) if env_name else None
    return {"Authorization": f"Bearer {key}"} if key else {}


def engine_listing(config: Config) -> list[dict]:
    """The models the external engine lists at GET /v1/models (their `id`; forge companions add `loaded`). Raises
    CompanionError (502) when it does not answer."""
    import httpx

    b = config.companion.backend
    try:
        r = httpx.get(f"{b.base_url}/models", headers=_engine_headers(b.api_key_env), timeout=b.timeout_s)
        r.raise_for_status()
        return [m for m in r.json().get("data", []) if isinstance(m, dict) and m.get("id")]
    except (httpx.HTTPError, ValueError, AttributeError, TypeError) as e:
        raise CompanionError(f"the engine at {b.base_url} did not list its models ({type(e).__name__}): is it "
                             f"running? (config companion.backend.base_url)", 502, "upstream_unavailable") from None


def _engine_swap(config: Config, model_id: str, serving: str) -> None:
    """An engine that serves one model at a time and says which (a forge companion): its own swap, when we hold
    its admin token; otherwise refused, saying where to swap."""
    import httpx

    b = config.companion.backend
    headers = _engine_headers(b.admin_token_env)
    if not headers:
        raise CompanionError(f"swap to {model_id!r} is not supported by this backend: the engine at {b.base_url} "
                             f"serves one model at a time ({serving!r} now). Swap it there, or set "
                             f"companion.backend.admin_token_env to let this companion do it", 409, "not_supported")
    root = b.base_url[:-3] if b.base_url.endswith("/v1") else b.base_url
    try:
        r = httpx.post(f"{root}/admin/reload-model", json={"model_id": model_id}, headers=headers,
                       timeout=config.companion.load_timeout_s)
    except httpx.HTTPError as e:
        raise CompanionError(f"the engine at {b.base_url} did not answer its swap ({type(e).__name__})", 502,
                             "upstream_unavailable") from None
    if r.status_code != 200:
        try:
            why = r.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            why = r.text[:300]
        raise CompanionError(f"the engine at {b.base_url} refused the swap to {model_id!r}: {why}",
                             r.status_code if r.status_code in (404, 409, 422) else 502, "model_load_failed")


def remote_model(config: Config, model_id: str, listing: list[dict] | None = None, load: bool = True) -> dict:
    """A model of the external engine as a registry-like record. `base` (forge's default) means the engine's
    default: companion.backend.model, else the first model it lists. With `load`, an engine that serves one model
    at a time is swapped to it first (see _engine_swap)."""
    b = config.companion.backend
    listing = engine_listing(config) if listing is None else listing
    names = [str(m["id"]) for m in listing]
    if model_id == "base" and b.model:
        model_id = b.model
    elif model_id == "base" and names and "base" not in names:
        model_id = names[0]
    check_model_id(model_id, remote=True)
    if names and model_id not in names:
        raise CompanionError(f"the engine at {b.base_url} does not serve {model_id!r} (it lists: "
                             f"{', '.join(names[:10])})", 404, "model_not_found")
    serving = [str(m["id"]) for m in listing if m.get("loaded")]
    if load and serving and model_id not in serving:
        _engine_swap(config, model_id, serving[0])
    return {"id": model_id, "model_id": model_id, "path": model_id, "name": model_id, "quant": None,
            "bytes": None, "sha256": None, "run_id": None, "status": "ready", "created_at": None,
            "meta": {"provenance": {"backend": "openai", "base_url": b.base_url}}}


def list_models(config: Config) -> list[dict]:
    if config.companion.backend.kind == "openai":
        listing = engine_listing(config)
        return [remote_model(config, str(m["id"]), listing, load=False) for m in listing]
    from forge.models.export import register_bundled_base
    from forge.store import Store

    store = Store.for_workspace(config.workspace_path())
    try:
        register_bundled_base(store, config)
        return [m for m in store.models() if m["status"] == "ready"]
    finally:
        store.close()
