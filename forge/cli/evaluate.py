"""Evaluation: eval (with baselines and intervals) and the built-in demo."""

from __future__ import annotations

from pathlib import Path

import click

from forge.cli import Ctx, emit, fail, json_option, main, run_guarded, _progress_run


# ---- eval ---------------------------------------------------------------------------------------------------
@main.command("eval")
@click.argument("model_id")
@click.option("--baseline", default="base", show_default=True,
              help="What to compare against: base = the model's own base, as that base's GGUF in the registry (the "
                   "bundled SmolLM2 is `base`, Gemma 3 270M `gemma3-270m`); a base id from `forge models bases`; "
                   "any model or LoRA adapter id (an adapter runs on its base); 'none' for no baseline.")
@click.option("--test-file", type=click.Path(exists=True), default=None,
              help="Held-out prompts in any format `forge extract` reads: JSONL in any shape, CSV/TSV, Parquet or "
                   "Arrow files, save_to_disk folders.")
@click.option("--dataset", "dataset_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="An exported dataset folder: its test.jsonl is used.")
@click.option("--run", "run_id", default=None, metavar="RUN_ID",
              help="A training run: its own held-out split (the notes it never trained on: data/test.jsonl in its "
                   "folder, or val.jsonl when test is empty), no file needed.")
@click.option("--max-tokens", default="auto", show_default=True,
              help="Output budget per prompt: a number, or auto = 1.5 × the 95th percentile of the reference "
                   "lengths in the base model's tokens (16…2048).")
@click.option("--timeout", "timeout_s", type=float, default=60, show_default=True, help="Seconds per prompt.")
@click.option("--baselines", "baselines", default="auto", show_default=True,
              help="The lead-N extractive baseline: auto = for summary-like tasks (N from the reference lengths), "
                   "lead = always, lead-3 = always with N = 3, none = never.")
@click.option("--keep-leaks", is_flag=True,
              help="Keep held-out prompts that have a near-duplicate in the model's training data (default: "
                   "excluded and counted).")
@click.option("--prompt-column", default=None, help="CSV/TSV/dataset test file: column with the prompt (default: "
              "detected).")
@click.option("--response-column", default=None, help="CSV/TSV/dataset test file: column with the reference answer.")
@click.option("--system-column", default=None, help="CSV/TSV/dataset test file: optional system prompt column.")
@click.option("--messages-column", default=None, help="Dataset test file: column with whole conversations.")
@click.option("--split", default=None, help="save_to_disk test folder: the split (default: test, else validation).")
@click.option("--voice/--no-voice", default=None,
              help="The voice judge (does the model write like you, copy your notes, loop): on by default when the "
                   "held-out texts are your own notes (a vault's, per the dataset's manifest); --voice forces it on.")
@click.option("--rerun-baseline", is_flag=True,
              help="Generate the baseline's answers again. By default they are reused from its last eval on the "
                   "same prompts, GGUF and token budget (a base does not change between fine-tunes).")
@json_option
@click.pass_obj
def eval_cmd(obj: Ctx, model_id, baseline, test_file, dataset_dir, run_id, max_tokens, timeout_s, baselines,
             keep_leaks, prompt_column, response_column, system_column, messages_column, split, voice,
             rerun_baseline, as_json: bool) -> None:
    """Evaluate MODEL_ID against a baseline on held-out prompts, decoded as the companion serves each (the model's
    own decoding defaults, else greedy), with paired 95 % intervals.
    Either side may be a LoRA adapter (`forge export RUN --adapter`): it runs as its base plus the adapter, as the
    companion serves a request naming it, so two adapters of one base, or an adapter and its base, compare."""
    from forge import eval as ev
    from forge.models import export as ex

    if run_id:  # a run that is not there, or holds nothing out, fails before anything is loaded
        run_guarded(as_json, ev.heldout_of, obj.store, test_file, dataset_dir, run_id)

    def go(progress):
        ex.register_bundled_base(obj.store, obj.config)
        return ev.evaluate(obj.store, model_id, None if baseline == "none" else baseline, test_file, dataset_dir,
                           max_tokens, timeout_s, (lambda m, d, t: progress(d, t)) if progress else None,
                           config=obj.config, baselines=baselines, keep_leaks=keep_leaks,
                           columns={"prompt_column": prompt_column, "response_column": response_column,
                                    "system_column": system_column, "messages_column": messages_column},
                           split=split, run_id=run_id, voice=voice, rerun_baseline=rerun_baseline)

    r = run_guarded(as_json, _progress_run, "evaluating", as_json, go)
    drop = ("eval", "voice")
    out = {"n": r["n"], "dataset": r["dataset"], "max_tokens": r["max_tokens"],
           **{role: {k: v for k, v in r[role].items() if k not in drop} for role in ("model", "baseline") if role in r},
           "lead": ({k: v for k, v in r["lead"].items() if k != "outputs"} if r["lead"] else None),
           "comparisons": r["comparisons"], "summary": r["summary"], "leaks": r["leaks"],
           "forgetting": r["forgetting"], "heldout": r["heldout"], "voice": r.get("voice"),
           "model_id": r["model_id"], "baseline_id": r.get("baseline_id"), "systems": r["systems"],
           "template": r["template"], "baseline_reused": r["baseline_reused"]}

    def human(d):
        if d["heldout"]:
            h = d["heldout"]
            click.echo(h["note"] or f"held-out split of run {h['run']}: {h['file']}", err=True)
        for name, s in d["systems"].items():
            if name != s["id"]:
                click.echo(f"{name}: {s['id']} ({Path(s['gguf']).name}" + (f" + {Path(s['lora']).name}" if s["lora"]
                                                                             else "") + ")", err=True)
        systems = [("tuned", d["model"])] + ([(r["baseline_name"], d["baseline"])] if "baseline" in d else [])
        systems += [(d["lead"]["id"], d["lead"]["metrics"])] if d["lead"] else []
        others = list(d["comparisons"])
        click.echo(f"{'metric':<20}" + "".join(f"{name:>11}" for name, _ in systems)
                   + "".join(f"   {'tuned − ' + o + ' (95 % CI)':<34}" for o in others) + f"   ({d['n']} prompts)")
        for k in d["model"]:
            cells = "".join(f"{ev.fmt_value(m.get(k)):>11}" for _, m in systems)
            diffs = "".join(f"   {ev.fmt_interval(d['comparisons'][o].get(k)):<34}" for o in others
                            if k in ev.QUALITY)
            click.echo(f"{k:<20}{cells}{diffs}".rstrip())
        click.echo(f"max tokens {d['max_tokens']} · * = the interval excludes 0")
        for line in d["summary"]:
            click.echo(f"- {line}")
        if d["voice"]:
            from forge.eval.voice import panel

            click.echo("\nYour voice\n" + panel(d["voice"]))

    emit(out, as_json, human)

# ---- demo ---------------------------------------------------------------------------------------------------
@main.command()
@click.option("--task", type=click.Choice(["reminders", "summarize", "intent", "voice", "preferences"]), default=None,
              help="reminders (default): request → '<task> | <when>'; summarize: dialogue → summary with {{RED:…}} "
                   "markers kept; intent: request → /api/convert's JSON (intent and entities); voice: Pepys's "
                   "1666 diary as a vault, the voice recipe, and the voice judge; preferences: reminders written "
                   "with filler, SFT, the person's edits and rejections, then DPO and KTO on top, and the filler "
                   "rate of each.")
@click.option("--adapters", is_flag=True,
              help="Train reminders and intent each as its own LoRA adapter of one base, serve both from ONE "
                   "companion, and evaluate each task's held-out set against its adapter and the base through it.")
@click.option("--max-steps", type=int, default=None, help="Override the task's training steps (demo spec).")
@click.option("--heldout-limit", type=click.IntRange(min=1), default=None,
              help="Evaluate on the first N held-out examples only (a quick check of the loop).")
@click.option("--base", "base_id", default=None, metavar="ID",
              help="Train on this base (any id `forge models bases` lists, e.g. gemma3-270m; default: the bundled "
                   "SmolLM2) and compare the tuned model with that base's own GGUF.")
@json_option
@click.pass_obj
def demo(obj: Ctx, task, adapters: bool, max_steps, heldout_limit, base_id, as_json: bool) -> None:
    """The whole loop on a built-in task in a fresh workspace (data/workspace-demo unless --workspace): import,
    approve, export, train, export the GGUF (Q4_K_M; Q8_0 on Gemma), evaluate on held-out data it never trained on
    against base (and the lead-N baseline for summaries), with paired 95 % intervals. Reminders take about 15
    minutes on a 2-core CPU, summaries about 25. With --adapters: two tasks, two adapters, one companion. --base:
    another base to train on."""
    from forge import eval as ev
    from forge.config import REPO_ROOT
    from forge.demo import demo_base, run_demo
    from forge.models import bases

    ws = Path(obj._workspace) if obj._workspace else REPO_ROOT / "data" / "workspace-demo"

    def say(msg):  # progress goes to stderr with --json too: stdout stays the JSON document alone
        click.echo(msg, err=True)

    run_guarded(as_json, bases.sync_config, obj.config)  # bases added in config.json count, as for `models bases`
    registered_in = obj.config.workspace_path()
    run_guarded(as_json, demo_base, base_id, registered_in)  # an unknown base: one line, before anything runs
    if adapters:
        if task:
            fail("--adapters trains its own two tasks (reminders and intent); leave out --task", as_json)
        return _demo_adapters(ws, say, max_steps, heldout_limit, as_json, base_id, registered_in)
    if task == "preferences":
        return _demo_preferences(ws, say, max_steps, heldout_limit, as_json, base_id, registered_in)
    r = run_guarded(as_json, run_demo, ws, say, max_steps, heldout_limit, base_id, task=task or "reminders",
                    bases_from=registered_in)
    keys = ("exact_match", "rouge_l", "rouge_lsum", "bleu", "latency_p50_ms", "tokens_per_s")
    keys += tuple(k for k in ("json_valid", "json_field_accuracy") if r["model"].get(k) is not None)  # intent
    out = {"task": r["task"], "n": r["n"], "max_tokens": r["max_tokens"],
           "model": {k: r["model"].get(k) for k in keys}, "baseline": {k: r["baseline"].get(k) for k in keys},
           "lead": ({"id": r["lead"]["id"], **{k: r["lead"]["metrics"].get(k) for k in keys}}
                    if r.get("lead") else None),
           "comparisons": r.get("comparisons", {}), "summary": r.get("summary", []), "base": r["base"],
           "base_model_id": r.get("baseline_id"), "template": r.get("template"), "run_id": r["run_id"],
           "model_id": r["model_id"], "workspace": r["workspace"], "train_minutes": r["train_minutes"],
           "minutes": r["minutes"], "markers": r.get("markers"), "voice": r.get("voice")}

    def human(d):
        systems = [("tuned", d["model"]), ("base", d["baseline"])] + ([(d["lead"]["id"], d["lead"])] if d["lead"] else [])
        others = list(d["comparisons"])
        click.echo(f"{d['task']} on {d['base']}: {d['n']} held-out prompts · training {d['train_minutes']} min · "
                   f"all {d['minutes']} min · base = {d['base_model_id']}'s GGUF")
        click.echo(f"{'':<16}" + "".join(f"{name:>10}" for name, _ in systems)
                   + "".join(f"   {'tuned − ' + o + ' (95 % CI)':<34}" for o in others))
        for k in keys:
            cells = "".join(f"{ev.fmt_value(m.get(k)):>10}" for _, m in systems)
            diffs = "".join(f"   {ev.fmt_interval(d['comparisons'][o].get(k)):<34}" for o in others
                            if k in ev.QUALITY)
            click.echo(f"{k:<16}{cells}{diffs}".rstrip())
        for name, m in (d["markers"] or {}).items():
            if m:
                extra = f", {m['invented']} with a marker not in the dialogue" if m["invented"] else ""
                click.echo(f"markers kept byte for byte, {name}: {m['kept']}/{m['n']} ({m['share']:.0%}){extra}")
        for line in d["summary"]:
            click.echo(f"- {line}")
        if d.get("voice"):
            from forge.eval.voice import panel

            click.echo("\nYour voice (here: Pepys's)\n" + panel(d["voice"]))

    emit(out, as_json, human)


def _demo_preferences(ws: Path, say, max_steps, heldout_limit, as_json: bool, base_id=None,
                      registered_in=None) -> None:
    from forge import eval as ev
    from forge.demo_preferences import run_preferences_demo

    r = run_guarded(as_json, run_preferences_demo, ws, say, max_steps, heldout_limit, base_id, registered_in)

    def human(d):
        t = d["train_minutes"]
        click.echo(f"preferences on {d['base']}: {d['fixes']['edited']} answers edited, {d['fixes']['rejected']} "
                   f"rejected · training sft {t['sft']} + dpo {t['dpo']} + kto {t['kto']} min · all {d['minutes']} min")
        rates = d["filler_rate"]
        click.echo("answers opening with filler on the held-out requests: "
                   + ", ".join(f"{name} {rates[name]['filler']}/{rates[name]['n']} ({rates[name]['rate']:.0%})"
                               for name in ("base", "sft", "dpo", "kto") if name in rates))
        for name in ("sft", "dpo", "kto"):
            res = d["results"][name]
            diff = (res["comparisons"].get(res["baseline"]) or next(iter(res["comparisons"].values()), {}) or {})
            click.echo(f"exact match, {name} {ev.fmt_value(res['exact_match'])} vs {res['baseline']} "
                       f"{ev.fmt_value(res['baseline_exact_match'])}: difference "
                       f"{ev.fmt_interval(diff.get('exact_match'))}")

    emit(r, as_json, human)


def _demo_adapters(ws: Path, say, max_steps, heldout_limit, as_json: bool, base_id=None,
                   registered_in=None) -> None:
    from forge import eval as ev
    from forge.demo import run_adapters_demo

    r = run_guarded(as_json, run_adapters_demo, ws, say, max_steps, heldout_limit, base_id,
                    bases_from=registered_in)
    keys = ("exact_match", "json_valid", "json_field_accuracy", "intent_accuracy", "rouge_l", "latency_p50_ms",
            "tokens_per_s", "errors")
    out = {**r, "tasks": {t: {**{k: v for k, v in d.items() if k not in ("adapter", "base")},
                              "adapter": {k: d["adapter"].get(k) for k in keys},
                              "base": {k: d["base"].get(k) for k in keys}} for t, d in r["tasks"].items()}}

    def human(d):
        c = d["companion"]
        click.echo(f"one companion ({c['url']}, pid {c['pid']}, {'stopped' if c['stopped'] else 'STILL RUNNING'}) "
                   f"served {d['base']} with {', '.join(c['adapters_loaded'])} · all {d['minutes']} min")
        for task, t in d["tasks"].items():
            click.echo(f"\n{task}: {t['n']} held-out prompts ({t['heldout_file']}) · adapter {t['adapter_id']} · "
                       f"training {t['train_minutes']} min · adapter export {t['export_s']} s")
            click.echo(f"{'':<20}{'adapter':>10}{'base':>10}   {'adapter − base (95 % CI)':<34}")
            shown = [k for k in keys if t["adapter"].get(k) is not None or t["base"].get(k) is not None]
            for k in shown:
                diff = ev.fmt_interval(t["comparison"].get(k)) if k in ev.QUALITY else ""
                click.echo(f"{k:<20}{ev.fmt_value(t['adapter'].get(k)):>10}{ev.fmt_value(t['base'].get(k)):>10}"
                           f"   {diff}".rstrip())
            for line in t["summary"]:
                click.echo(f"- {line}")

    emit(out, as_json, human)
