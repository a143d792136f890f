"""Settings: config."""

from __future__ import annotations

import json

import click

from forge.cli import Ctx, emit, json_option, main, run_guarded


# ---- config -------------------------------------------------------------------------------------------------
@main.command("config")
@json_option
@click.pass_obj
def config_cmd(obj: Ctx, as_json: bool) -> None:
    """Show every setting with its current value and what it does."""
    from forge.config import field_docs

    cfg = run_guarded(as_json, lambda: obj.config)
    data = cfg.model_dump(by_alias=True)

    def value(key):
        node = data
        for k in key.split("."):
            node = node[k]
        return node

    rows = [{"key": k, "value": value(k), "default": json.loads(d), "doc": doc} for k, d, doc in field_docs()]

    def human(rows):
        for r in rows:
            click.echo(f"{r['key']} = {json.dumps(r['value'])}")
            click.echo(f"    {r['doc'].splitlines()[0] if r['doc'] else ''}")

    emit(rows, as_json, human)
