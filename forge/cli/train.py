"""Training: train (with the length report and recipes) and runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from forge.cli import Ctx, emit, json_option, main, run_guarded


# ---- train --------------------------------------------------------------------------------------------------
@main.command()
@click.option("--max-steps", type=int, default=None, help="Stop after N steps (default: the demo defaults).")
@click.option("--backend", type=click.Choice(["auto", "peft", "unsloth"]), default=None)
@click.option("--resume", "resume_id", default=None, help="Resume RUN_ID from its last complete checkpoint.")
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A train spec JSON (fields and defaults: forge/train/spec.py).")
@click.option("--dataset", "dataset_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Train on an exported dataset folder instead of the approved examples now.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec field, e.g. lora_r=8.")
@click.option("--recipe", type=click.Choice(["short-answers", "summaries", "style", "voice"]), default=None,
              help="Start from a task recipe's defaults (forge/train/recipes.py); --spec and --set override them.")
@click.option("--allow-truncation", is_flag=True,
              help="Train even if an explicit max_seq_len truncates more than 2 % of the examples.")
@click.option("--method", type=click.Choice(["sft", "dpo", "kto", "orpo"]), default=None,
              help="sft (default): the approved examples. dpo: preference pairs. kto: good/bad labels. orpo: pairs, "
                   "no reference model (forge prefs counts them).")
@click.option("--from", "from_run", default=None, metavar="RUN",
              help="Start from RUN's finished adapter (e.g. DPO on top of an SFT run).")
@json_option
@click.pass_obj
def train(obj: Ctx, max_steps, backend, resume_id, spec_path, dataset_dir, overrides, recipe, allow_truncation,
          method, from_run, as_json: bool) -> None:
    """Train a LoRA adapter in its own process and follow it to the end (Ctrl-C saves and stops).

    Before it starts, the training examples' lengths are measured and shown (max_seq_len auto covers 98 % of
    them); an explicit max_seq_len that truncates more than 2 % is refused without --allow-truncation.
    --method dpo/kto trains on the preferences the store holds (`forge prefs` counts them), from a fresh
    adapter or, with --from RUN, on top of RUN's."""
    import signal as _signal

    from forge.train import runs
    from forge.train.events import as_float
    from forge.train.recipes import recipe_spec
    from forge.train.spec import SpecError, TrainSpec

    lengths_seen: dict = {}

    def check_lengths(report: dict) -> bool:
        lengths_seen.update(report)
        if not as_json:
            from forge.train.lengths import summary_lines

            for line in summary_lines(report):
                click.echo(line, err=True)
        return allow_truncation or not report["needs_confirm"]

    def build_spec():
        from pydantic import ValidationError

        from forge.errors import format_validation_error

        text = Path(spec_path).read_text() if spec_path else None
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError as e:
            raise SpecError(f"{spec_path}:{e.lineno}: not valid JSON: {e.msg}") from None
        if not isinstance(data, dict):
            raise SpecError(f"{spec_path}: the top level must be a JSON object")
        sets = []  # each --set KEY=VALUE, its value read as JSON when it is
        for item in overrides:
            key, _, raw = item.partition("=")
            try:
                sets.append((key, json.loads(raw)))
            except json.JSONDecodeError:
                sets.append((key, raw))
        base = next((value for key, value in reversed(sets) if key == "base_model"), data.get("base_model"))
        data = {**recipe_spec(recipe, base), **data}  # the recipe's defaults for the base the run trains on
        for key, value in sets:
            head, dot, field = key.partition(".")
            if dot:  # decoding.repeat_penalty=1.2: one field of a nested setting
                if not isinstance(data.get(head), (dict, type(None))) or not field:
                    raise SpecError(f"--set {key}: {head} is not a group of settings (only decoding.FIELD=VALUE "
                                    f"takes a dot)")
                data[head] = {**(data.get(head) or {}), field: value}
            else:
                data[key] = value
        if max_steps is not None:
            data["max_steps"] = max_steps
        if backend:
            data["backend"] = backend
        if method:
            data["method"] = method
        if from_run:
            data["from_run"] = from_run
        try:
            return TrainSpec.model_validate(data)
        except ValidationError as e:
            raise SpecError(format_validation_error(e, spec_path or "train spec", text)) from None

    def go():
        from forge.models import bases

        if resume_id:
            run_id = resume_id
            run_dir = runs.run_dir_of(obj.store, run_id)
        else:
            spec = build_spec()
            from forge.models.base_model import prepare_base

            bases.sync_config(obj.config)  # config.json's `bases` where the runner finds them
            # A registered GGUF base is materialised now, with progress, rather than silently inside the length
            # measurement create_run makes
            prepare_base(spec.base_model, obj.config.workspace_path(),
                         None if as_json else lambda msg: click.echo(f"base: {msg}", err=True))
            run_id, run_dir = runs.create_run(obj.store, obj.config, spec,
                                              Path(dataset_dir) if dataset_dir else None, check_lengths)
        proc = runs.launch(run_dir, resume=bool(resume_id))
        previous = _signal.signal(_signal.SIGINT, lambda *a: runs.stop(proc))

        def show(e):
            if as_json:
                return
            if e["event"] == "log":
                eta = as_float(e.get("eta_s"))
                margin = as_float(e.get("rewards_margin"))
                click.echo(f"step {e['step']}/{e.get('max_steps', '?')}  loss {as_float(e['loss']):.4f}  "
                           + (f"margin {margin:+.3f}  " if margin is not None else "")
                           + (f"{e['tokens_per_s']:.0f} tok/s" if e.get("tokens_per_s") is not None else "")
                           + (f"  eta {eta:.0f}s" if eta else ""), err=True)
            elif e["event"] == "eval":
                click.echo(f"step {e['step']}  eval_loss {as_float(e['eval_loss']):.4f}", err=True)
            elif e["event"] in ("info", "warning", "checkpoint"):
                click.echo(f"{e['event']}: {e.get('message') or e.get('path')}", err=True)
            elif e["event"] == "status":
                click.echo(f"status: {e['status']}" + (f" ({e['message']})" if e.get("message") else ""), err=True)

        try:
            runs.wait(proc, run_dir, show)
        finally:
            _signal.signal(_signal.SIGINT, previous)
        final = runs.finalize(obj.store, run_id, run_dir, proc.returncode)
        return {"run_id": run_id, "status": final.get("status"), "first_loss": as_float(final.get("first_loss")),
                "last_loss": as_float(final.get("last_loss")), "adapter_dir": final.get("adapter_dir"),
                "step": final.get("step"), "message": final.get("message"),
                "lengths": lengths_seen or None, "padding_share": as_float(final.get("padding_share")),
                "forgetting": final.get("forgetting")}

    r = run_guarded(as_json, go)
    emit(r, as_json, lambda d: click.echo(f"{d['run_id']}: {d['status']}"
                                          + (f" at step {d['step']}" if d.get("step") is not None else "")
                                          + (f", loss {d['first_loss']:.3f} → {d['last_loss']:.3f}"
                                             if d.get("first_loss") is not None else "")
                                          + (f"\n{d['message']}" if d.get("message") else "")))
    if r["status"] == "failed":
        sys.exit(1)


@main.command("runs")
@json_option
@click.pass_obj
def runs_cmd(obj: Ctx, as_json: bool) -> None:
    """Training runs, newest first (a run whose runner died unseen is marked failed here, with the reason)."""
    def go():
        from forge.train import runs

        runs.settle(obj.store)
        return obj.store.runs()

    rows = run_guarded(as_json, go)
    from forge.train.runs import run_kind

    out = [{"run_id": r["id"], "status": r["status"], "created_at": r["created_at"], "run_dir": r["run_dir"],
            **run_kind(r["spec"]),
            **{k: r["meta"].get(k) for k in ("step", "first_loss", "last_loss", "adapter_dir", "message")}}
           for r in rows]
    emit(out, as_json, lambda rows: [click.echo(
        f"{r['run_id']}  {r['status']:<9}  {r['method']:<4} {('from ' + r['from_run'] + '  ') if r['from_run'] else ''}"
        f"on {r['base']}  step {r['step']}  loss {r['last_loss']}") for r in rows])
