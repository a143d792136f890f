"""`forge serve` and `forge swap`, registered on forge's CLI by the console script (tui/launch.py).

Kept light: importing this module loads neither FastAPI nor llama.cpp; `serve` imports them when it runs.
"""

from __future__ import annotations

import os
import sys

import click

from forge.cli import Ctx, emit, fail, json_option, main as cli, run_guarded


def refuse_adapter(config, model_id: str) -> None:
    """An adapter is not a model to serve on its own: say so before anything loads, and what to run instead."""
    from companion.adapters import is_adapter
    from forge.store import Store

    store = Store.for_workspace(config.workspace_path())
    try:
        record = store.get_model(model_id, missing_ok=True)
    finally:
        store.close()
    if is_adapter(record):
        base = record["meta"].get("base_id") or "its base"
        fail(f"{model_id} is a LoRA adapter of {base}: `forge serve --model {base}`, then POST /admin/adapters "
             f"{{\"adapter_id\": \"{model_id}\"}} and send \"model\": \"{model_id}\" in requests", False)


@cli.command()
@click.option("--port", type=int, default=None, help="TCP port (default: companion.port, 8765).")
@click.option("--host", default=None, help="Address to bind (default: companion.host, 127.0.0.1).")
@click.option("--model", "model_id", default=None, help="Registry id to serve (default: companion.model, `base`).")
@click.option("--exit-with-parent", is_flag=True, hidden=True,
              help="Stop when the process that started this one dies (the TUI passes it).")
@click.pass_obj
def serve(obj: Ctx, port, host, model_id, exit_with_parent: bool) -> None:
    """Serve a model through the OpenAI-compatible companion API (headless)."""
    import asyncio
    import logging
    import socket

    import uvicorn

    from companion.app import create_app, start_pool
    from companion.pool import CompanionError
    from companion.settings import Settings, admin_token_and_source, model_to_serve

    config = run_guarded(False, lambda: obj.config)
    if host:
        config.companion.host = host
    if port:
        config.companion.port = port
    model_id, why = model_to_serve(config, model_id)
    if config.companion.backend.kind != "openai":
        refuse_adapter(config, model_id)
    settings = Settings.from_config(config, model_id)
    where = admin_token_and_source(config)[1]
    c = config.companion

    try:  # a taken port is found before the model loads, not after
        with socket.socket(socket.AF_INET6 if ":" in c.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((c.host, c.port))
    except OSError as e:
        fail(f"cannot listen on {c.host}:{c.port}: {e.strerror} (another `forge serve`? --port picks another)", False)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logging.getLogger("forge.companion").addHandler(handler)
    logging.getLogger("forge.companion").setLevel(logging.INFO)

    async def run() -> None:
        app = create_app(settings)
        click.echo(f"forge companion: loading {settings.model} ({why}) …", err=True)
        try:
            info = await start_pool(app)
        except CompanionError as e:
            fail(e.message, False)
        click.echo(f"forge companion: {settings.model} loaded in {info['load_ms'] / 1000:.1f} s; serving "
                   f"http://{c.host}:{c.port}/v1 (admin token: {where}); Ctrl-C stops", err=True)
        if c.host not in ("127.0.0.1", "localhost", "::1"):
            click.echo(f"forge companion: warning: bound to {c.host}, reachable from the network", err=True)
        server = uvicorn.Server(uvicorn.Config(app, host=c.host, port=c.port, log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=10))
        if exit_with_parent:
            parent = os.getppid()

            async def watch_parent() -> None:  # forge's UI killed hard: do not stay behind holding the port
                while not server.should_exit:
                    if os.getppid() != parent:
                        click.echo("forge companion: the UI that started me is gone; stopping", err=True)
                        server.should_exit = True
                    await asyncio.sleep(1)

            watcher = asyncio.create_task(watch_parent())
        try:
            await server.serve()
        finally:
            if exit_with_parent:
                watcher.cancel()
            if not server.started:  # the port was taken: uvicorn said why; the lifespan never ran
                await app.state.pool.close()

    asyncio.run(run())


@cli.command()
@click.argument("model_id")
@click.option("--url", default=None, help="Companion URL (default: http://127.0.0.1:<companion.port>).")
@click.option("--timeout", "timeout_s", type=float, default=600, show_default=True)
@json_option
@click.pass_obj
def swap(obj: Ctx, model_id, url, timeout_s, as_json: bool) -> None:
    """Hot-swap the running companion to MODEL_ID (a registry id); requests in flight are not dropped."""
    from companion.client import SwapError, request_swap

    config = run_guarded(as_json, lambda: obj.config)
    try:
        body = request_swap(config, model_id, url, timeout_s)
    except SwapError as e:
        fail(str(e), as_json)
    emit(body, as_json, lambda d: click.echo(
        f"now serving {d['model']} (was {d['previous']}); load {d['load_ms'] / 1000:.1f} s, "
        f"swap {d['swap_ms'] / 1000:.1f} s; smoke test said {d['smoke']!r}"))


if __name__ == "__main__":
    cli(sys.argv[1:])
