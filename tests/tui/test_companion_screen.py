"""Companion mode as a person uses it: start the server from the UI, chat with the served model, swap to another
model from Models mode with the swap's progress, stop the server. Real `forge serve`, real llama.cpp."""

import pytest
from textual.widgets import DataTable, Static

from forge.config import load_config
from forge.store import Store
from tests.conftest import free_port
from tests.tui.helpers import wait_until
from tui.app import make_app
from tui.screens.companion import CompanionScreen
from tui.screens.models import ModelsScreen


def text_of(widget) -> str:
    return str(widget.render())


@pytest.mark.slow
async def test_start_chat_swap_and_stop_from_the_ui(companion_ws):
    config = load_config(companion_ws[0], environ={})
    config.companion.port = free_port()
    store = Store.for_workspace(config.workspace_path())
    app = make_app(config, store)
    try:
        async with app.run_test(size=(150, 45)) as pilot:
            await pilot.press("f6")
            screen = app.screen
            assert isinstance(screen, CompanionScreen)
            health = screen.query_one("#companion-health", Static)
            assert await wait_until(pilot, lambda: "stopped" in text_of(health), 10)

            await pilot.press("ctrl+s")
            assert await wait_until(pilot, lambda: "healthy" in text_of(health), 120, 0.25), text_of(health)
            assert "model base" in text_of(health) and app.companion.owned

            await pilot.press(*"Hello there", "enter")
            log = screen.query_one("#chat-log")
            assert await wait_until(pilot, lambda: "tokens in" in " ".join(text_of(w) for w in log.children), 60)
            reply = text_of(log.children[-1])
            assert reply.startswith("base") and len(reply.split()) > 4
            assert await wait_until(pilot, lambda: "requests 1 served" in text_of(health), 10)

            await pilot.press("f5")
            models = app.screen
            assert isinstance(models, ModelsScreen)
            table = models.query_one("#model-table", DataTable)
            ids = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
            table.move_cursor(row=ids.index("alt"))
            await pilot.press("ctrl+w")
            status = models.query_one("#swap-status", Static)
            assert await wait_until(pilot, lambda: "now serves alt" in text_of(status), 120, 0.25), text_of(status)

            await pilot.press("ctrl+v")  # Evaluate: Eval mode opens on the highlighted model
            from textual.widgets import Select

            from tui.screens.eval import EvalScreen

            assert await wait_until(pilot, lambda: isinstance(app.screen, EvalScreen), 10)
            assert app.screen.query_one("#eval-model", Select).value == "alt"

            await pilot.press("f6")
            assert await wait_until(pilot, lambda: "model alt" in text_of(health) and "last swap → alt: ok"
                                    in text_of(health), 10)
            await pilot.press("ctrl+s")
            assert await wait_until(pilot, lambda: "stopped" in text_of(health), 30)
            assert not app.companion.owned
    finally:
        app.companion.stop()
        store.close()
