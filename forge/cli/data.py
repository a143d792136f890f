"""Getting examples in: extract (vault, CSV/TSV, JSONL, datasets), dataset export, dedup, generate, backtranslate."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from forge.cli import Ctx, emit, json_option, main, run_guarded, _progress_run


# ---- extract ------------------------------------------------------------------------------------------------
def _report_extract(report: dict) -> None:
    read = f"read {report['read']} · " if report.get("read") else ""
    click.echo(read + f"added {report['added']}, updated {report['updated']}, unchanged {report['unchanged']}"
               + (f", kept human version {report['kept']}" if report.get("kept") else "")
               + (f", duplicates {report['duplicates']}" if report.get("duplicates") else "")
               + f", skipped {len(report['skipped'])}")
    flt = report.get("filter")
    if flt and flt.get("origin") == "remembered":
        click.echo("  filter remembered for this vault: "
                   + (", ".join("#" + t for t in flt["include_tags"]) or "all notes")
                   + (f"; folders {', '.join(flt['include_folders'])}" if flt["include_folders"] else "")
                   + (f"; not {', '.join(flt['exclude_folders'])}" if flt["exclude_folders"] else "")
                   + " (--forget-filter to go back to config.json's)", err=True)
    chunked = report.get("chunked") or {}
    if chunked.get("notes"):
        click.echo(f"  {chunked['notes']} long note(s) split at headings into {chunked['examples']} examples that fit "
                   f"extract.obsidian.max_tokens" + (f" ({chunked['hard_splits']} paragraph(s) split mid-way)"
                                                     if chunked.get("hard_splits") else ""), err=True)
    repaired = report.get("repaired") or []
    if repaired:
        click.echo(f"  {len(repaired)} note(s) imported although their frontmatter is not valid YAML (fix it to keep "
                   f"Obsidian's properties view working):", err=True)
        for r in repaired[:5]:
            click.echo(f"    {r['source']}: {r['reason'].split(': ', 1)[-1]}", err=True)
        if len(repaired) > 5:
            click.echo(f"    … and {len(repaired) - 5} more (use --json for all)", err=True)
    ds = report.get("dataset")
    if ds:
        click.echo(f"  split {ds['split']}" + (f" of {', '.join(ds['splits'])}" if len(ds["splits"]) > 1 else "")
                   + (f" · {ds['shape']}" if ds.get("shape") else ""), err=True)
    if report.get("reasons"):
        from forge.data.extract.common import SKIP_CODES

        click.echo("  skipped: " + ", ".join(f"{n} {SKIP_CODES.get(code, code)}"
                                             for code, n in sorted(report["reasons"].items(), key=lambda kv: -kv[1])),
                   err=True)
    shown = [s for s in report["skipped"] if s.get("code") not in ("tag-filter", "folder-filter", "not-a-note")]
    for s in shown[:20]:
        click.echo(f"  skipped {s['source']}: {s['reason']}", err=True)
    if len(shown) > 20:
        click.echo(f"  … and {len(shown) - 20} more (use --json for all)", err=True)
    if report.get("hint"):
        click.echo(f"forge: {report['hint']}", err=True)


def _extract(obj: Ctx, kind: str, path: str, as_json: bool, **options) -> None:
    from forge.data.extract import run_extract

    def go(progress):
        return run_extract(obj.store, kind, path, obj.config, progress, **options)

    report = run_guarded(as_json, _progress_run, f"extracting {Path(path).name}", as_json, go)
    emit(report, as_json, _report_extract)


@main.group()
def extract() -> None:
    """Turn a vault, CSV/TSV file, LLM output or dataset file into pending examples (idempotent: re-run freely)."""


@extract.command("obsidian")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--tag", "tags", multiple=True, metavar="TAG",
              help="Take notes with this tag (or a nested tag under it); repeatable. Default: config include_tags.")
@click.option("--all-notes", is_flag=True, help="Take every note, whatever its tags.")
@click.option("--folder", "folders", multiple=True, metavar="DIR", help="Only notes inside this vault folder; repeatable.")
@click.option("--exclude-folder", "exclude_folders", multiple=True, metavar="DIR",
              help="Leave out notes inside this vault folder; repeatable.")
@click.option("--forget-filter", is_flag=True, help="Drop the filter remembered for this vault; use config.json's.")
@click.option("--recipe", type=click.Choice(["voice"]), default=None,
              help="Split notes as the recipe trains them (voice: chunks of the recipe's note_tokens).")
@json_option
@click.pass_obj
def extract_obsidian(obj: Ctx, path: str, tags, all_notes, folders, exclude_folders, forget_filter, recipe,
                     as_json: bool) -> None:
    """Notes of an Obsidian vault at PATH. Every file is accounted for: an example, or skipped with its reason.

    The tag and folder filter given here is remembered for this vault, so a plain re-run uses it again."""
    if forget_filter:
        run_guarded(as_json, obj.store.remember_source, "obsidian", str(Path(path).resolve()), {})
    from forge.train.recipes import RECIPES

    extra = {"note_tokens": RECIPES[recipe].note_tokens} if recipe else {}
    _extract(obj, "obsidian", path, as_json, tags=list(tags), all_notes=all_notes, folders=list(folders),
             exclude_folders=list(exclude_folders), **extra)


@extract.command("csv")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt-column", default=None, help="Column with the user turn (default: detected).")
@click.option("--response-column", default=None, help="Column with the assistant turn (default: detected).")
@click.option("--system-column", default=None, help="Optional column with a system prompt.")
@json_option
@click.pass_obj
def extract_csv(obj: Ctx, path: str, prompt_column, response_column, system_column, as_json: bool) -> None:
    """Rows of a CSV or TSV file (any common encoding; .tsv/.tab files are tab-separated). A header with
    chosen/rejected or completion/label columns is read as preference pairs or KTO labels."""
    _extract(obj, "csv", path, as_json, prompt_column=prompt_column, response_column=response_column,
             system_column=system_column)


@extract.command("jsonl")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@json_option
@click.pass_obj
def extract_jsonl(obj: Ctx, path: str, as_json: bool) -> None:
    """LLM output: JSONL/JSON in chat, Alpaca, Dolly, Self-Instruct, input/output or prompt/completion shapes, fenced
    or not; or your own chat history: the conversations.json of a ChatGPT or Claude data export (one example per
    conversation); or preference data: prompt/chosen/rejected pairs (text, turns, or HH-RLHF transcripts) and KTO
    prompt/completion/label rows."""
    _extract(obj, "jsonl", path, as_json)


@extract.command("dataset")
@click.argument("path", type=click.Path(exists=True))
@click.option("--split", default=None, help="Split of a save_to_disk folder (default: train, or the only one).")
@click.option("--prompt-column", default=None, help="Column with the user turn (default: detected).")
@click.option("--response-column", default=None, help="Column with the assistant turn (default: detected).")
@click.option("--system-column", default=None, help="Optional column with a system prompt.")
@click.option("--messages-column", default=None, help="Column with whole conversations (default: messages or "
              "conversations, when there is one).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Read at most this many rows.")
@json_option
@click.pass_obj
def extract_dataset(obj: Ctx, path: str, split, prompt_column, response_column, system_column, messages_column, limit,
                    as_json: bool) -> None:
    """Rows of a Parquet or Arrow file, a `datasets.save_to_disk` folder, or a folder of Parquet shards: chat
    (messages/conversations), Self-Instruct, Alpaca, preference pairs (chosen/rejected) and KTO labels
    (prompt/completion/label), or the prompt/response columns you name."""
    _extract(obj, "dataset", path, as_json, split=split, prompt_column=prompt_column, response_column=response_column,
             system_column=system_column, messages_column=messages_column, limit=limit)

# ---- dataset ------------------------------------------------------------------------------------------------
@main.group()
def dataset() -> None:
    """Build training data from approved examples."""


@dataset.command("export")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for train/val/test JSONL.")
@click.option("--val", type=float, default=None, help="Validation fraction (default from config: 0.1).")
@click.option("--test", type=float, default=None, help="Test fraction (default from config: 0.1).")
@click.option("--seed", type=int, default=None, help="Split seed (default from config: 42).")
@click.option("--format", "fmt", type=click.Choice(["chat", "alpaca"]), default=None)
@click.option("--keep-leaks", is_flag=True, help="Keep val/test examples that have a near-duplicate in train "
              "(default: reported and moved into train).")
@click.option("--preferences", type=click.Choice(["dpo", "kto"]), default=None, is_flag=False, flag_value="dpo",
              help="Write the preference data instead (TRL's format): dpo pairs prompt/chosen/rejected (the "
              "default), or kto prompt/completion/label.")
@json_option
@click.pass_obj
def dataset_export(obj: Ctx, out, val, test, seed, fmt, keep_leaks, preferences, as_json: bool) -> None:
    """Write train/val/test JSONL and manifest.json; no example lands in two splits, all examples of one vault note
    land in the same split (notes are held out, not chunks), and no val/test example has a near-duplicate
    (cosine ≥ dedup.threshold) in train unless --keep-leaks. --preferences writes the pairs (or KTO labels) the
    store holds, split as the examples they come from are."""
    from forge.data.dataset import export_dataset
    from forge.data.preferences import export_preferences

    if preferences:
        r = run_guarded(as_json, export_preferences, obj.store, out, obj.config, preferences, val, test, seed,
                        keep_leaks)
        emit(r, as_json, lambda d: click.echo(
            f"{d['kind']}: train {d['train']}, val {d['val']}, test {d['test']} → {out}\n"
            f"by source: {', '.join(f'{k} {v}' for k, v in d['sources'].items())}"
            + (f"\nleakage: {len(d['leaks_moved'])} held-out record(s) moved into train" if d['leaks_moved'] else "")))
        return

    r = run_guarded(as_json, export_dataset, obj.store, out, obj.config, val, test, seed, fmt, keep_leaks)

    def human(d):
        nt = d["notes"]  # vault notes are held out whole: how many each split holds

        def part(name):
            n = nt[name]
            return f"{name} {d[name]}" + (f" ({n} note{'s' if n != 1 else ''})" if any(nt.values()) else "")

        click.echo(f"{part('train')}, {part('val')}, {part('test')} → {out}\ndataset hash {d['dataset_hash']}")
        lk = d["leaks"]
        if lk["test"] or lk["val"]:
            ids = ", ".join(str(i) for i in lk["test"] + lk["val"])
            mates = f" with {len(lk['with_note'])} other example(s) of their notes" if lk["with_note"] else ""
            click.echo(f"leakage: {len(lk['test'])} test and {len(lk['val'])} val example(s) have a near-duplicate in "
                       f"train (cosine ≥ {lk['threshold']:.2f}): {ids} — "
                       + (f"moved into train{mates}" if lk["moved"] else "kept (--keep-leaks)"), err=True)

    emit(r, as_json, human)

# ---- dedup --------------------------------------------------------------------------------------------------
@main.command()
@click.option("--threshold", type=float, default=None, help="Cosine similarity for near-duplicates (default: config).")
@click.option("--apply", "do_apply", is_flag=True,
              help="Keep one per cluster (approved > edited > longest) and reject the rest, as one undoable decision.")
@json_option
@click.pass_obj
def dedup(obj: Ctx, threshold, do_apply: bool, as_json: bool) -> None:
    """Find near-duplicate clusters among pending and approved examples (embeddings cached in the store)."""
    from forge.data import dedup as dd

    result = run_guarded(as_json, _progress_run, "embedding", as_json,
                         lambda progress: dd.find_duplicates(obj.store, obj.config, threshold, progress))
    out = result.to_json()
    if do_apply:
        decision = run_guarded(as_json, dd.apply, obj.store, result.clusters)
        out["applied"] = {"decision": decision,
                          "rejected": sum(len(c.ids) - 1 for c in result.clusters) if decision else 0}

    def human(d):
        for c in d["clusters"]:
            click.echo(f"{c['max_similarity']:.3f}  keep {c['keep']:>6}  of {', '.join(map(str, c['ids']))}")
        click.echo(f"{len(d['clusters'])} clusters · embedded {d['embedded']} · from cache {d['cached']}"
                   + (f" · rejected {d['applied']['rejected']} (undo with `forge undo`)" if "applied" in d else ""))

    emit(out, as_json, human)

# ---- generate -----------------------------------------------------------------------------------------------
@main.command()
@click.option("--base-url", required=True, help="OpenAI-compatible endpoint, e.g. https://openrouter.ai/api/v1")
@click.option("--model", default=None, help="Model name at that endpoint (default: config generate.model, else the "
              "first model the endpoint lists at GET /v1/models).")
@click.option("--n", "n", type=int, required=True, help="How many new examples to add.")
@click.option("--template", default="pairs", show_default=True,
              help="Prompt template id (pairs, variations) or your own text with {k} and {topic}.")
@click.option("--topic", default=None, help="What the examples are about (for the pairs template).")
@click.option("--from-approved", is_flag=True, help="Few-shot variations of approved examples.")
@json_option
@click.pass_obj
def generate(obj: Ctx, base_url, model, n, template, topic, from_approved, as_json: bool) -> None:
    """Generate new pending examples with an LLM (API key from the env var named in config)."""
    from forge.llm import generate as gen

    def go(progress):
        def report(r):
            if progress:
                progress(r.added, n)

        return gen.generate(obj.store, obj.config, base_url, n, model, template, topic, from_approved, report)

    r = run_guarded(as_json, _progress_run, "generating", as_json, go)
    out = r.to_json()
    emit(out, as_json, lambda d: click.echo(
        f"added {d['added']} · duplicates {d['duplicates']} · failed {d['failed']} · tokens "
        f"{d['prompt_tokens']} in / {d['completion_tokens']} out · model {d['model']}"
        + (f" ({d['model_how']})" if d["model_how"] else "") + (f"\n  last error: {r.errors[-1]}" if r.errors else "")))

# ---- backtranslate ------------------------------------------------------------------------------------------
@main.command()
@click.option("--base-url", default=None,
              help="OpenAI-compatible endpoint (default: the local companion, http://127.0.0.1:<companion.port>/v1).")
@click.option("--model", default=None,
              help="Model name at that endpoint (default: config backtranslate.model, else the first it lists).")
@click.option("--source", default=None, metavar="PREFIX",
              help="Only notes whose source (obsidian:PATH) or vault path starts with PREFIX, e.g. Journal/.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many notes in this run.")
@json_option
@click.pass_obj
def backtranslate(obj: Ctx, base_url, model, source, limit, as_json: bool) -> None:
    """An LLM writes the request each note answers, in place of the template prompt ("Tell me about …").

    The note stays the answer byte for byte; each new prompt is an edit in the decision log (`forge undo` brings the
    template back), the example stays pending. Notes you approved, rejected or edited are left alone. Stopped
    (Ctrl-C, --limit, a cap), a re-run goes on with the notes left."""
    from forge.llm import backtranslate as bt

    def go(progress):
        def report(r):
            if progress:
                progress(r.done + r.failed, r.total)

        return bt.backtranslate(obj.store, obj.config, base_url, model, source, limit, report)

    r = run_guarded(as_json, _progress_run, "writing prompts", as_json, go)

    def human(d):
        click.echo(f"backtranslated {d['done']} · failed {d['failed']} · skipped {d['skipped']} · tokens "
                   f"{d['prompt_tokens']} in / {d['completion_tokens']} out · {d['requests']} requests"
                   + (f" · model {d['model']}" + (f" ({d['model_how']})" if d["model_how"] else "") if d["model"]
                      else ""))
        for line in d["errors"][:10]:
            click.echo(f"  failed {line}", err=True)
        if len(d["errors"]) > 10:
            click.echo(f"  … and {len(d['errors']) - 10} more (use --json for all)", err=True)
        if d["skipped"]:
            click.echo("  left alone: " + ", ".join(f"{n} {bt.SKIP_REASONS.get(k, k)}"
                                                    for k, n in d["skipped_by_reason"].items()), err=True)
        if d["remaining"]:
            click.echo(f"  {'stopped; ' if d['interrupted'] else ''}{d['remaining']} note(s) still carry the template "
                       f"prompt: run it again to go on", err=True)
        elif not d["done"] and not d["failed"]:
            click.echo("  no note carries the template prompt" + (f" under {source}" if source else ""), err=True)
        if d["error"]:
            click.echo(f"forge: error: {d['error']}", err=True)

    out = r.to_json()
    emit(out, as_json, human)
    if r.interrupted:
        sys.exit(130)
    if r.error:
        sys.exit(1)


# ---- prefs ----------------------------------------------------------------------------------------------------
@main.group(invoke_without_command=True)
@json_option
@click.pass_context
def prefs(ctx, as_json: bool) -> None:
    """Preference data: how many DPO pairs and KTO labels your edits, votes, rejections, imports and drafts make,
    by source (`forge dataset export --preferences` writes them; `forge train --method dpo|kto` trains on them)."""
    if ctx.invoked_subcommand:
        return
    from forge.data.preferences import counts, describe

    obj: Ctx = ctx.obj
    r = run_guarded(as_json, counts, obj.store)

    def human(c):
        click.echo(describe(c))
        click.echo("pairs by source: " + ", ".join(f"{k} {v}" for k, v in c["pairs"].items()))
        click.echo("KTO labels by source: " + ", ".join(f"{k} {v}" for k, v in c["labels_by_source"].items()))

    emit(r, as_json, human)


@prefs.command("draft")
@click.option("--model", "model_id", default="base", help="Registered model that drafts (default: base).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Draft for the first N notes only.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Draft length (default: 1.5 × the 95th percentile of the notes' lengths).")
@json_option
@click.pass_obj
def prefs_draft(obj: Ctx, model_id, limit, max_tokens, as_json: bool) -> None:
    """Let MODEL answer the prompts of your approved notes and store its drafts: each draft becomes the rejected
    side of a self-play pair, your note the chosen (SPIN). Run it again with a newer model to refresh them."""
    from forge.eval.drafts import draft
    from forge.models.export import register_bundled_base

    if model_id == "base":
        run_guarded(as_json, register_bundled_base, obj.store, obj.config)
    r = _progress_run("drafting", as_json, lambda progress: run_guarded(
        as_json, draft, obj.store, obj.config, model_id, limit, max_tokens, progress=progress))
    emit(r, as_json, lambda d: click.echo(f"{d['drafted']} drafts by {d['model_id']} stored "
                                          f"(max {d['max_tokens']} tokens)"
                                          + (f"; {d['failed']} failed (crash or timeout)" if d["failed"] else "")))
