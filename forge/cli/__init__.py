"""The headless CLI, one module per command group (forge/cli/*.py), each registering on `main`. Every subcommand takes --json and then prints exactly one JSON document on stdout.

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


def _progress_run(label: str, as_json: bool, fn):
    """Run fn(progress) with a rich progress bar on stderr; with --json or when stderr is not a terminal (a log
    file, CI), one plain line on stderr every 15 s instead (none for a quicker command; stdout stays the JSON document
    alone)."""
    if as_json or not sys.stderr.isatty():
        import time

        state = {"at": time.monotonic(), "wrote": None}  # when a line was last written (the start), and which

        def line(done, total):
            now = time.monotonic()
            finished = bool(total) and done >= total and state["wrote"] is not None  # a quick command: no line
            if (now - state["at"] >= 15 or finished) and state["wrote"] != (done, total):
                state["at"], state["wrote"] = now, (done, total)
                of = f"/{total} ({100 * done / total:.0f} %)" if total else ""
                print(f"{label}: {done}{of}", file=sys.stderr, flush=True)

        return fn(line)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        return fn(lambda done, total: bar.update(task, completed=done, total=total))


# Each group registers its commands on `main` when imported (curate, data, train, models, evaluate, configure).
from forge.cli import configure, curate, data, evaluate, models, train  # noqa: E402,F401
