"""The `forge` console script: the headless CLI of forge.cli plus the `tui` command, which is the default.

Lives in tui/ so the arrow points inward (tui → forge); textual is imported only when the UI opens.
"""

from __future__ import annotations

import click

import companion.cli  # noqa: F401  (registers `serve` and `swap`)
from forge.cli import Ctx, main as cli, run_guarded


@cli.command()
@click.pass_obj
def tui(obj: Ctx) -> None:
    """Open the terminal UI (the default when no command is given)."""
    config = run_guarded(False, lambda: obj.config)
    from tui.app import make_app

    app = make_app(config, obj.store)
    try:
        app.run()
    finally:
        app.companion.stop()  # a companion started from the UI ends with it; `forge serve` runs one headless


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
