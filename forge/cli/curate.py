"""Curating from the shell: list, show, approve, reject, undo, redo, stats."""

from __future__ import annotations

import click

from forge.cli import Ctx, emit, json_option, main, run_guarded


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
    """List examples. A preference pair is marked `⇄ pair`, a KTO-labelled example `+ desirable` or `- undesirable`;
    with --json a pair has `rejected` (the rejected answer; its messages end with the chosen one) and a KTO example
    `label` (true or false)."""
    def go():
        ids = obj.store.ids(status=status, tag=tag, source=source, search=search)
        return [e.to_json() for e in obj.store.examples(ids[:limit] if limit else ids)]

    rows = run_guarded(as_json, go)

    def human(rows):
        for r in rows:
            first = next((m["content"] for m in r["messages"] if m["role"] == "user"), "")
            click.echo(f"{r['id']:>6}  {r['status']:<8}  {r['source'][:40]:<40}  {first[:60]!r}{_kind_mark(r)}")
        click.echo(f"{len(rows)} examples", err=True)

    emit(rows, as_json, human)


def _kind_mark(row: dict) -> str:
    """What `forge list` appends to a preference example's line (nothing for a plain one)."""
    if "rejected" in row:
        return "  ⇄ pair"
    if "label" in row:
        return "  + desirable" if row["label"] else "  - undesirable"
    return ""


@main.command()
@click.argument("example_id", type=int)
@json_option
@click.pass_obj
def show(obj: Ctx, example_id: int, as_json: bool) -> None:
    """Show one example."""
    ex = run_guarded(as_json, obj.store.get, example_id)

    def human(d):
        click.echo(f"#{d['id']} [{d['status']}] {d['source']}  tags: {', '.join(d['tags']) or '-'}{_kind_mark(d)}")
        for i, m in enumerate(d["messages"]):
            chosen = " (chosen)" if "rejected" in d and i == len(d["messages"]) - 1 else ""
            click.echo(f"\n--- {m['role']}{chosen} ---\n{m['content']}")
        if "rejected" in d:
            click.echo(f"\n--- rejected ---\n{d['rejected']}")

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
    from forge.data import curate

    _decide(obj, ids, as_json, lambda i: curate.approve(obj.store, i, obj.config))


@main.command()
@click.argument("ids", type=int, nargs=-1, required=True)
@click.option("--reason", default=None)
@json_option
@click.pass_obj
def reject(obj: Ctx, ids, reason, as_json: bool) -> None:
    """Reject examples."""
    from forge.data import curate

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
