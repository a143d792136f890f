"""Models: export (GGUF, hf, peft, adapter) and the registry (models, models add)."""

from __future__ import annotations

from pathlib import Path

import click

from forge.cli import Ctx, emit, json_option, main, run_guarded


# ---- export -------------------------------------------------------------------------------------------------
@main.command()
@click.argument("run_id")
@click.option("--quant", type=click.Choice(["auto", "q4_k_m", "q5_k_m", "q8_0", "f16"], case_sensitive=False),
              default="auto", show_default=True,
              help="auto: the run's base's default, q4_k_m; q8_0 for Gemma 3 270M, which ships at 4 bits, so 4 bits "
                   "again round much of the fine-tune away (or export --adapter: the LoRA on the base, exact).")
@click.option("--chat-template", "template_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Embed this Jinja chat template in the GGUF instead of the one the run trained with.")
@click.option("--allow-template-mismatch", is_flag=True, help="Keep the GGUF even if the template check fails.")
@click.option("--format", "fmt", type=click.Choice(["gguf", "hf", "peft"]), default="gguf", show_default=True,
              help="gguf: a quantized GGUF in the registry (llama.cpp, Ollama, the companion); hf: the merged "
                   "safetensors folder (vLLM, SGLang, TGI); peft: the adapter folder (vLLM --enable-lora, PEFT).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for --format hf/peft (default: <workspace>/exports/RUN_ID-FORMAT).")
@click.option("--adapter", is_flag=True,
              help="Write only the LoRA, as a llama.cpp GGUF adapter of its base (seconds, a few MB); registered "
                   "under its base, served with `llama-server --lora` or the companion's /admin/adapters.")
@click.option("--base", "base_id", default=None,
              help="With --adapter: the registered GGUF the adapter applies to (default: the run's base).")
@json_option
@click.pass_obj
def export(obj: Ctx, run_id, quant, template_file, allow_template_mismatch, fmt, out, adapter, base_id,
           as_json: bool) -> None:
    """Merge RUN_ID's adapter, convert to GGUF, quantize, check, and register the model (or, with --format, write
    the folder vLLM / SGLang / TGI / PEFT load). Prints the commands that serve the result."""
    from forge.models import export as ex

    def say(stage, message):  # on stderr with --json too: stdout stays the JSON document alone
        click.echo(f"[{stage}] {message}", err=True)

    def show_commands(d):
        click.echo("\nserve it with:", err=True)
        for engine, cmd in d["commands"].items():
            click.echo(f"  {engine:<13} {cmd}", err=True)
        click.echo(f"(also in {d['readme']})", err=True)

    if adapter:
        r = run_guarded(as_json, ex.export_adapter, obj.store, obj.config, run_id, base_id, say)

        def human(d):
            click.echo(f"{d['model_id']}: {d['path']} ({d['bytes'] / 1e6:.1f} MB LoRA adapter of {d['base_id']}, "
                       f"r={d['lora']['rank']}, alpha={d['lora']['alpha']:g})")
            show_commands(d)

        emit(r, as_json, human)
        return
    if fmt != "gguf":
        from forge.models.handoff import export_handoff

        r = run_guarded(as_json, export_handoff, obj.store, obj.config, run_id, fmt, out, say)

        def human(d):
            click.echo(f"{d['format']}: {d['path']}")
            show_commands(d)

        emit(r, as_json, human)
        return
    template = Path(template_file).read_text() if template_file else None
    r = run_guarded(as_json, ex.export_run, obj.store, obj.config, run_id, quant.lower(), say,
                    allow_template_mismatch, template)

    def human(d):
        click.echo(f"{d['model_id']}: {d['path']} ({d['bytes'] / 1e6:.1f} MB, "
                   f"template parity {'ok' if d['template_parity'] else 'FAILED'})")
        show_commands(d)

    emit(r, as_json, human)


@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """The model registry (the bundled SmolLM2 is `base`); `models add` registers a GGUF made elsewhere."""
    if ctx.invoked_subcommand is not None:
        return
    obj = ctx.obj
    from forge.models import export as ex

    def go():
        ex.register_bundled_base(obj.store, obj.config)
        return [{"model_id": m["id"], "name": m["name"], "path": m["path"], "quant": m["quant"], "bytes": m["bytes"],
                 "sha256": m["sha256"], "run_id": m["run_id"], "status": m["status"], "created_at": m["created_at"],
                 "template_parity": m["meta"].get("template_parity"), "provenance": m["meta"].get("provenance"),
                 "kind": m["meta"].get("kind", "model"), "base_id": m["meta"].get("base_id"),
                 "trained_on": (m["meta"].get("provenance") or {}).get("forge.base_model")}
                for m in ex.models_with_adapters(obj.store.models())]

    def line(r: dict) -> str:
        where = (f"  (adapter of {r['base_id']})" if r["kind"] == "adapter"
                 else f"  (merged, trained on {r['trained_on']})" if r["trained_on"] else "")
        return (f"{('  └ ' if r['kind'] == 'adapter' else '') + r['model_id']:<40} "
                f"{r['quant'] or '?':<7} {(r['bytes'] or 0) / 1e6:8.1f} MB  {r['status']}{where}")

    rows = run_guarded(as_json, go)
    emit(rows, as_json, lambda rows: [click.echo(line(r)) for r in rows])


@models.command("add")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--id", "model_id", default=None, help="Registry id (default: from the file name).")
@json_option
@click.pass_obj
def models_add(obj: Ctx, path: str, model_id: str | None, as_json: bool) -> None:
    """Copy a GGUF into the workspace's models folder and register it, e.g. to serve or evaluate it."""
    from forge.models import export as ex

    m = run_guarded(as_json, ex.import_gguf, obj.store, obj.config, path, model_id)
    emit({"model_id": m["id"], "name": m["name"], "path": m["path"], "quant": m["quant"], "bytes": m["bytes"],
          "sha256": m["sha256"]}, as_json,
         lambda d: click.echo(f"registered {d['model_id']} ({d['quant'] or 'unknown quant'}, "
                              f"{d['bytes'] / 1e6:.1f} MB) → forge serve --model {d['model_id']}"))


@models.command("bases")
@json_option
@click.pass_obj
def models_bases(obj: Ctx, as_json: bool) -> None:
    """The base models a run can train on (`forge train --set base_model=ID`): bundled, installed, added."""
    from forge.models import bases

    def go():
        bases.sync_config(obj.config)
        ws = obj.config.workspace_path()
        rows = []
        for b in bases.list_bases(ws):
            d = b.describe()
            d["materialised"] = (bases.hf_dir(b, ws) / "FORGE_COMPLETE").exists() \
                if b.source_kind in ("package", "gguf") else None
            rows.append(d)
        return rows

    def human(rows):
        for r in rows:
            template = "own" if r["chat_template"] == "own" else f"none → forge's {r['chat_template']}"
            ctx = f"{r['context']:,}" if r["context"] else "?"
            click.echo(f"{r['id']:<24} {r['architecture']:<10} {r['size']:>5}  ctx {ctx:<7} template {template:<22} "
                       f"{r['source_kind']}: {r['source']}  ({r['license']})")

    emit(run_guarded(as_json, go), as_json, human)


@models.command("add-base")
@click.argument("base_id")
@click.argument("source")
@click.option("--chat-template", "chat_template", type=click.Choice(["gemma", "chatml"]), default=None,
              help="Turn format for a base without a chat template (default: Gemma's for Gemma, else ChatML).")
@click.option("--license", "license_", default=None, help="The base's licence, shown by `forge models bases`.")
@json_option
@click.pass_obj
def models_add_base(obj: Ctx, base_id: str, source: str, chat_template: str | None, license_: str | None,
                    as_json: bool) -> None:
    """Register SOURCE (a GGUF file, a local HF model folder, or a hub id) as base BASE_ID of this workspace. A hub
    id is only noted: forge never downloads it (transformers uses it from its cache)."""
    from forge.models import bases

    b = run_guarded(as_json, bases.add_base, obj.config.workspace_path(), base_id, source, chat_template, license_)
    emit(b.describe(), as_json,
         lambda d: click.echo(f"registered base {d['id']} ({d['source_kind']}: {d['source']}, {d['architecture']}, "
                              f"template {d['chat_template']}) → forge train --set base_model={d['id']}"))
