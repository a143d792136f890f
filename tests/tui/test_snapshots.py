"""Pixel-stable pictures of the Curate mode and the edit dialog on the sample vault, and the Companion mode.
Regenerate after an intended change with: scripts/test tests/tui/test_snapshots.py --snapshot-update"""

from tui.app import make_app


def test_curate_screen(snap_compare, sample_store, config):
    assert snap_compare(make_app(config, sample_store), terminal_size=(110, 36))


def test_edit_dialog(snap_compare, sample_store, config):
    assert snap_compare(make_app(config, sample_store), press=["j", "e"], terminal_size=(110, 36))


def test_companion_screen_stopped(snap_compare, store, config):
    """Companion mode with no server running (port 1: nothing listens there)."""
    from tests.tui.helpers import wait_until

    config.companion.port = 1

    async def until_polled(pilot):
        await pilot.press("f6")
        await wait_until(pilot, lambda: "stopped" in str(pilot.app.screen.query_one("#companion-health").render()))
        from textual.widgets import Input

        for field in pilot.app.screen.query(Input):  # a blinking cursor is drawn or not by the clock: make it steady
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(make_app(config, store), run_before=until_polled, terminal_size=(110, 30))
