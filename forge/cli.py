"""The headless CLI. Every subcommand takes --json and then prints exactly one JSON document on stdout.

Kept light on purpose: `forge --help` imports neither textual nor torch (checked by tests/test_import_hygiene.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from forge import __version__


class Ctx:
    def __init__(self, workspace: str | None, config_path: str | None, debug: bool = False):
        self._workspace = workspace
        self._config_path = config_path
        self._config = None
        self._store = None
        self.debug = debug
        self.as_json = False  # set by --json on the subcommand, for errors caught outside run_guarded

    @property
    def config(self):
        if self._config is None:
            from forge.config import load_config

            self._config = load_config(self._config_path)
            if self._workspace:
                self._config.workspace = str(Path(self._workspace).expanduser().resolve())
        return self._config

    @property
    def workspace(self) -> Path:
        return self.config.workspace_path()

    @property
    def store(self):
        if self._store is None:
            from forge.store import Store

            self._store = Store.for_workspace(self.workspace)
        return self._store


def emit(data, as_json: bool, human=None) -> None:
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=str))
    elif human is not None:
        human(data)
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def fail(message: str, as_json: bool, code: int = 1):
    if as_json:
        click.echo(json.dumps({"error": message}, ensure_ascii=False))
    click.echo(f"forge: error: {message}", err=True)
    sys.exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause: forge's own ForgeError, and pydantic's ValidationError (a bad value set in code from
    user input). A KeyError or FileNotFoundError is a bug in forge and keeps its traceback."""
    from pydantic import ValidationError

    from forge.errors import ForgeError

    return (ForgeError, ValidationError)


def user_error(e: BaseException, as_json: bool):
    """Report a user error as one line (with the traceback too under `forge --debug`) and exit 1."""
    from pydantic import ValidationError

    from forge.errors import format_validation_error

    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Ctx) if ctx else None
    if obj is not None and obj.debug:
        import traceback

        click.echo("".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip(), err=True)
    message = (format_validation_error(e, e.title) if isinstance(e, ValidationError)
               else str(e.args[0]) if e.args else str(e))
    fail(message, as_json)


def run_guarded(as_json: bool, fn, *args, **kwargs):
    """Run fn; a mistake the user can fix becomes a one-line error, never a traceback."""
    try:
        return fn(*args, **kwargs)
    except _user_errors() as e:
        user_error(e, as_json)


def _note_json(ctx: click.Context, param, value):
    obj = ctx.find_object(Ctx)
    if obj is not None and value:
        obj.as_json = True
    return value


json_option = click.option("--json", "as_json", is_flag=True, callback=_note_json,
                           help="Print exactly one JSON document.")


class _Main(click.Group):
    """The top-level group: a user error that no run_guarded caught (one raised while a command builds its
    arguments, say) is still one line, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _user_errors() as e:
            user_error(e, bool(getattr(ctx.obj, "as_json", False)))


@click.group(cls=_Main, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--workspace", "-w", type=click.Path(file_okay=False), default=None,
              help="Workspace folder (forge.db, runs/, models/, exports/). Default: config.json's `workspace`.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Config file (default: config.json at the repo root, or $FORGE_CONFIG).")
@click.option("--debug", is_flag=True, help="Print the traceback of an error too (for a bug report).")
@click.version_option(__version__, prog_name="forge")
@click.pass_context
def main(ctx: click.Context, workspace: str | None, config_path: str | None, debug: bool = False) -> None:
    """forge — turn your notes and data into a fine-tuned model you can serve.

    Run without a command to open the terminal UI.
    """
    ctx.obj = Ctx(workspace, config_path, debug)
    if ctx.invoked_subcommand is None:
        # The UI registers itself as the `tui` command (tui/launch.py); the core knows nothing of it.
        default = main.get_command(ctx, "tui")
        if default is None:
            click.echo(ctx.get_help())
            return
        ctx.invoke(default)


# ---- extract ------------------------------------------------------------------------------------------------
def _progress_run(label: str, as_json: bool, fn):
    """Run fn(progress) with a rich progress bar on stderr (none with --json or when stderr is not a terminal)."""
    if as_json or not sys.stderr.isatty():
        return fn(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        return fn(lambda done, total: bar.update(task, completed=done, total=total))


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
    ds = report.get("dataset")
    if ds:
        click.echo(f"  split {ds['split']}" + (f" of {', '.join(ds['splits'])}" if len(ds["splits"]) > 1 else "")
                   + (f" · {ds['shape']}" if ds.get("shape") else ""), err=True)
    if report.get("reasons"):
        from forge.extract.common import SKIP_CODES

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
    from forge.extract import run_extract

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
@json_option
@click.pass_obj
def extract_obsidian(obj: Ctx, path: str, tags, all_notes, folders, exclude_folders, forget_filter,
                     as_json: bool) -> None:
    """Notes of an Obsidian vault at PATH. Every file is accounted for: an example, or skipped with its reason.

    The tag and folder filter given here is remembered for this vault, so a plain re-run uses it again."""
    if forget_filter:
        run_guarded(as_json, obj.store.remember_source, "obsidian", str(Path(path).resolve()), {})
    _extract(obj, "obsidian", path, as_json, tags=list(tags), all_notes=all_notes, folders=list(folders),
             exclude_folders=list(exclude_folders))


@extract.command("csv")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--prompt-column", default=None, help="Column with the user turn (default: detected).")
@click.option("--response-column", default=None, help="Column with the assistant turn (default: detected).")
@click.option("--system-column", default=None, help="Optional column with a system prompt.")
@json_option
@click.pass_obj
def extract_csv(obj: Ctx, path: str, prompt_column, response_column, system_column, as_json: bool) -> None:
    """Rows of a CSV or TSV file (any common encoding; .tsv/.tab files are tab-separated)."""
    _extract(obj, "csv", path, as_json, prompt_column=prompt_column, response_column=response_column,
             system_column=system_column)


@extract.command("jsonl")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@json_option
@click.pass_obj
def extract_jsonl(obj: Ctx, path: str, as_json: bool) -> None:
    """LLM output: JSONL/JSON in chat, Alpaca, Self-Instruct, input/output or prompt/completion shapes, fenced or
    not."""
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
    (messages/conversations), Self-Instruct, Alpaca, or the prompt/response columns you name."""
    _extract(obj, "dataset", path, as_json, split=split, prompt_column=prompt_column, response_column=response_column,
             system_column=system_column, messages_column=messages_column, limit=limit)


# ---- curate -------------------------------------------------------------------------------------------------
@main.command("list")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected"]), default=None)
@click.option("--tag", default=None, help="Only examples with this tag (or a nested tag under it).")
@click.option("--source", default=None, help="Only examples whose source contains this text.")
@click.option("--search", default=None, help="Full-text search (SQLite FTS5).")
@click.option("--limit", type=int, default=None, help="At most this many.")
@json_option
@click.pass_obj
def list_(obj: Ctx, status, tag, source, search, limit, as_json: bool) -> None:
    """List examples."""
    def go():
        ids = obj.store.ids(status=status, tag=tag, source=source, search=search)
        return [e.to_json() for e in obj.store.examples(ids[:limit] if limit else ids)]

    rows = run_guarded(as_json, go)

    def human(rows):
        for r in rows:
            first = next((m["content"] for m in r["messages"] if m["role"] == "user"), "")
            click.echo(f"{r['id']:>6}  {r['status']:<8}  {r['source'][:40]:<40}  {first[:60]!r}")
        click.echo(f"{len(rows)} examples", err=True)

    emit(rows, as_json, human)


@main.command()
@click.argument("example_id", type=int)
@json_option
@click.pass_obj
def show(obj: Ctx, example_id: int, as_json: bool) -> None:
    """Show one example."""
    ex = run_guarded(as_json, obj.store.get, example_id)

    def human(d):
        click.echo(f"#{d['id']} [{d['status']}] {d['source']}  tags: {', '.join(d['tags']) or '-'}")
        for m in d["messages"]:
            click.echo(f"\n--- {m['role']} ---\n{m['content']}")

    emit(ex.to_json(), as_json, human)


def _decide(obj: Ctx, ids: tuple[int, ...], as_json: bool, fn) -> None:
    done = []
    for i in ids:
        run_guarded(as_json, fn, i)
        done.append(i)
    emit({"ids": done, "counts": obj.store.counts()}, as_json,
         lambda d: click.echo(f"ok: {', '.join(map(str, d['ids']))}"))


@main.command()
@click.argument("ids", type=int, nargs=-1, required=True)
@json_option
@click.pass_obj
def approve(obj: Ctx, ids, as_json: bool) -> None:
    """Approve examples (refused, with the reason, when an example is invalid)."""
    from forge import curate

    _decide(obj, ids, as_json, lambda i: curate.approve(obj.store, i, obj.config))


@main.command()
@click.argument("ids", type=int, nargs=-1, required=True)
@click.option("--reason", default=None)
@json_option
@click.pass_obj
def reject(obj: Ctx, ids, reason, as_json: bool) -> None:
    """Reject examples."""
    from forge import curate

    _decide(obj, ids, as_json, lambda i: curate.reject(obj.store, i, reason))


def _replay(obj: Ctx, as_json: bool, redo: bool) -> None:
    r = run_guarded(as_json, obj.store.redo if redo else obj.store.undo)
    verb, key = ("redid", "redone") if redo else ("undid", "undone")
    emit(r, as_json, lambda d: click.echo(f"{verb} {d[key]} of {', '.join(map(str, d['example_ids'][:10]))}"))


@main.command()
@json_option
@click.pass_obj
def undo(obj: Ctx, as_json: bool) -> None:
    """Undo the latest decision (a whole batch, for a dedup --apply)."""
    _replay(obj, as_json, redo=False)


@main.command()
@json_option
@click.pass_obj
def redo(obj: Ctx, as_json: bool) -> None:
    """Redo the latest undone decision."""
    _replay(obj, as_json, redo=True)


@main.command()
@json_option
@click.pass_obj
def stats(obj: Ctx, as_json: bool) -> None:
    """Counts by status."""
    c = run_guarded(as_json, obj.store.counts)
    emit(c, as_json, lambda d: click.echo("  ".join(f"{k} {v}" for k, v in d.items())))


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
@json_option
@click.pass_obj
def dataset_export(obj: Ctx, out, val, test, seed, fmt, keep_leaks, as_json: bool) -> None:
    """Write train/val/test JSONL and manifest.json; no example lands in two splits, and no val/test example has a
    near-duplicate (cosine ≥ dedup.threshold) in train unless --keep-leaks."""
    from forge.dataset import export_dataset

    r = run_guarded(as_json, export_dataset, obj.store, out, obj.config, val, test, seed, fmt, keep_leaks)

    def human(d):
        click.echo(f"train {d['train']}, val {d['val']}, test {d['test']} → {out}\ndataset hash {d['dataset_hash']}")
        lk = d["leaks"]
        if lk["test"] or lk["val"]:
            ids = ", ".join(str(i) for i in lk["test"] + lk["val"])
            click.echo(f"leakage: {len(lk['test'])} test and {len(lk['val'])} val example(s) have a near-duplicate in "
                       f"train (cosine ≥ {lk['threshold']:.2f}): {ids} — "
                       + ("moved into train" if lk["moved"] else "kept (--keep-leaks)"), err=True)

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
    from forge import dedup as dd

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
@click.option("--recipe", type=click.Choice(["short-answers", "summaries", "style"]), default=None,
              help="Start from a task recipe's defaults (forge/train/recipes.py); --spec and --set override them.")
@click.option("--allow-truncation", is_flag=True,
              help="Train even if an explicit max_seq_len truncates more than 2 % of the examples.")
@json_option
@click.pass_obj
def train(obj: Ctx, max_steps, backend, resume_id, spec_path, dataset_dir, overrides, recipe, allow_truncation,
          as_json: bool) -> None:
    """Train a LoRA adapter in its own process and follow it to the end (Ctrl-C saves and stops).

    Before it starts, the training examples' lengths are measured and shown (max_seq_len auto covers 98 % of
    them); an explicit max_seq_len that truncates more than 2 % is refused without --allow-truncation."""
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
        data = {**recipe_spec(recipe), **data}
        for item in overrides:
            key, _, raw = item.partition("=")
            try:
                data[key] = json.loads(raw)
            except json.JSONDecodeError:
                data[key] = raw
        if max_steps is not None:
            data["max_steps"] = max_steps
        if backend:
            data["backend"] = backend
        try:
            return TrainSpec.model_validate(data)
        except ValidationError as e:
            raise SpecError(format_validation_error(e, spec_path or "train spec", text)) from None

    def go():
        if resume_id:
            run_id = resume_id
            run_dir = runs.run_dir_of(obj.store, run_id)
        else:
            run_id, run_dir = runs.create_run(obj.store, obj.config, build_spec(),
                                              Path(dataset_dir) if dataset_dir else None, check_lengths)
        proc = runs.launch(run_dir, resume=bool(resume_id))
        previous = _signal.signal(_signal.SIGINT, lambda *a: runs.stop(proc))

        def show(e):
            if as_json:
                return
            if e["event"] == "log":
                eta = as_float(e.get("eta_s"))
                click.echo(f"step {e['step']}/{e.get('max_steps', '?')}  loss {as_float(e['loss']):.4f}  "
                           f"{e.get('tokens_per_s', 0):.0f} tok/s" + (f"  eta {eta:.0f}s" if eta else ""), err=True)
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
    out = [{"run_id": r["id"], "status": r["status"], "created_at": r["created_at"], "run_dir": r["run_dir"],
            **{k: r["meta"].get(k) for k in ("step", "first_loss", "last_loss", "adapter_dir", "message")}}
           for r in rows]
    emit(out, as_json, lambda rows: [click.echo(f"{r['run_id']}  {r['status']:<9}  step {r['step']}  "
                                                f"loss {r['last_loss']}") for r in rows])


# ---- export -------------------------------------------------------------------------------------------------
@main.command()
@click.argument("run_id")
@click.option("--quant", type=click.Choice(["q4_k_m", "q5_k_m", "q8_0", "f16"], case_sensitive=False),
              default="q4_k_m", show_default=True)
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
    from forge import export as ex

    def say(stage, message):
        if not as_json:
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
        from forge.handoff import export_handoff

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
    from forge import export as ex

    def go():
        ex.register_bundled_base(obj.store, obj.config)
        return [{"model_id": m["id"], "name": m["name"], "path": m["path"], "quant": m["quant"], "bytes": m["bytes"],
                 "sha256": m["sha256"], "run_id": m["run_id"], "status": m["status"], "created_at": m["created_at"],
                 "template_parity": m["meta"].get("template_parity"), "provenance": m["meta"].get("provenance"),
                 "kind": m["meta"].get("kind", "model"), "base_id": m["meta"].get("base_id")}
                for m in ex.models_with_adapters(obj.store.models())]

    rows = run_guarded(as_json, go)
    emit(rows, as_json, lambda rows: [click.echo(f"{('  └ ' if r['kind'] == 'adapter' else '') + r['model_id']:<40} "
                                                 f"{r['quant'] or '?':<7} {r['bytes'] / 1e6:8.1f} MB  {r['status']}"
                                                 + (f"  (adapter of {r['base_id']})" if r['kind'] == 'adapter' else ""))
                                      for r in rows])


@models.command("add")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--id", "model_id", default=None, help="Registry id (default: from the file name).")
@json_option
@click.pass_obj
def models_add(obj: Ctx, path: str, model_id: str | None, as_json: bool) -> None:
    """Copy a GGUF into the workspace's models folder and register it, e.g. to serve or evaluate it."""
    from forge import export as ex

    m = run_guarded(as_json, ex.import_gguf, obj.store, obj.config, path, model_id)
    emit({"model_id": m["id"], "name": m["name"], "path": m["path"], "quant": m["quant"], "bytes": m["bytes"],
          "sha256": m["sha256"]}, as_json,
         lambda d: click.echo(f"registered {d['model_id']} ({d['quant'] or 'unknown quant'}, "
                              f"{d['bytes'] / 1e6:.1f} MB) → forge serve --model {d['model_id']}"))


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
    from forge import generate as gen

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
    from forge import backtranslate as bt

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


# ---- eval ---------------------------------------------------------------------------------------------------
@main.command("eval")
@click.argument("model_id")
@click.option("--baseline", default="base", show_default=True, help="Model to compare against ('none' for no baseline).")
@click.option("--test-file", type=click.Path(exists=True), default=None,
              help="Held-out prompts in any format `forge extract` reads: JSONL in any shape, CSV/TSV, Parquet or "
                   "Arrow files, save_to_disk folders.")
@click.option("--dataset", "dataset_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="An exported dataset folder: its test.jsonl is used.")
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
@json_option
@click.pass_obj
def eval_cmd(obj: Ctx, model_id, baseline, test_file, dataset_dir, max_tokens, timeout_s, baselines, keep_leaks,
             prompt_column, response_column, system_column, messages_column, split, as_json: bool) -> None:
    """Evaluate MODEL_ID against a baseline on held-out prompts (greedy, as served), with paired 95 % intervals."""
    from forge import eval as ev
    from forge import export as ex

    def go(progress):
        ex.register_bundled_base(obj.store, obj.config)
        return ev.evaluate(obj.store, model_id, None if baseline == "none" else baseline, test_file, dataset_dir,
                           max_tokens, timeout_s, (lambda m, d, t: progress(d, t)) if progress else None,
                           config=obj.config, baselines=baselines, keep_leaks=keep_leaks,
                           columns={"prompt_column": prompt_column, "response_column": response_column,
                                    "system_column": system_column, "messages_column": messages_column},
                           split=split)

    r = run_guarded(as_json, _progress_run, "evaluating", as_json, go)
    drop = ("eval",)
    out = {"n": r["n"], "dataset": r["dataset"], "max_tokens": r["max_tokens"],
           **{role: {k: v for k, v in r[role].items() if k not in drop} for role in ("model", "baseline") if role in r},
           "lead": ({k: v for k, v in r["lead"].items() if k != "outputs"} if r["lead"] else None),
           "comparisons": r["comparisons"], "summary": r["summary"], "leaks": r["leaks"],
           "forgetting": r["forgetting"]}

    def human(d):
        systems = [("tuned", d["model"])] + ([("base" if r.get("baseline_id") == "base" else r["baseline_id"],
                                              d["baseline"])] if "baseline" in d else [])
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

    emit(out, as_json, human)


# ---- demo ---------------------------------------------------------------------------------------------------
@main.command()
@click.option("--task", type=click.Choice(["reminders", "summarize"]), default="reminders", show_default=True,
              help="reminders: request → '<task> | <when>'; summarize: dialogue → summary with {{RED:…}} markers kept.")
@click.option("--max-steps", type=int, default=None, help="Override the task's training steps (demo spec).")
@json_option
@click.pass_obj
def demo(obj: Ctx, task, max_steps, as_json: bool) -> None:
    """The whole loop on a built-in task in a fresh workspace (data/workspace-demo unless --workspace): import,
    approve, export, train, export Q4_K_M, evaluate on held-out data it never trained on against base (and the
    lead-N baseline for summaries), with paired 95 % intervals. Reminders take about 15 minutes on a 2-core CPU,
    summaries about 25."""
    from forge import eval as ev
    from forge.config import REPO_ROOT
    from forge.demo import run_demo

    ws = Path(obj._workspace) if obj._workspace else REPO_ROOT / "data" / "workspace-demo"

    def say(msg):
        if not as_json:
            click.echo(msg, err=True)

    r = run_guarded(as_json, run_demo, ws, say, max_steps, task=task)
    keys = ("exact_match", "rouge_l", "rouge_lsum", "bleu", "latency_p50_ms", "tokens_per_s")
    out = {"task": r["task"], "n": r["n"], "max_tokens": r["max_tokens"],
           "model": {k: r["model"].get(k) for k in keys}, "baseline": {k: r["baseline"].get(k) for k in keys},
           "lead": ({"id": r["lead"]["id"], **{k: r["lead"]["metrics"].get(k) for k in keys}}
                    if r.get("lead") else None),
           "comparisons": r.get("comparisons", {}), "summary": r.get("summary", []), "run_id": r["run_id"],
           "model_id": r["model_id"], "workspace": r["workspace"], "train_minutes": r["train_minutes"],
           "minutes": r["minutes"], "markers": r.get("markers")}

    def human(d):
        systems = [("tuned", d["model"]), ("base", d["baseline"])] + ([(d["lead"]["id"], d["lead"])] if d["lead"] else [])
        others = list(d["comparisons"])
        click.echo(f"{d['task']}: {d['n']} held-out prompts · training {d['train_minutes']} min · all {d['minutes']} min")
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

    emit(out, as_json, human)


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


if __name__ == "__main__":
    main()
