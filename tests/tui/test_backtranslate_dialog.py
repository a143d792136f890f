"""The backtranslate dialog in Curate (B) against a scripted OpenAI-compatible server on loopback: it runs in a
worker, shows progress and the results, and Curate then shows the written prompts with who wrote them."""

from rich.console import Console
from textual.widgets import Button, Input, ProgressBar, Static

from forge.data.extract import run_extract
from tests.forge.llm.llm_server import scripted_server
from tests.forge.llm.test_backtranslate import VAULT, cfg, question
from tests.tui.helpers import wait_until
from tui.app import make_app
from tui.screens.backtranslate_dialog import BacktranslateScreen
from tui.screens.curate import CurateScreen


def text_of(static: Static) -> str:
    console = Console(width=140, record=True, file=open("/dev/null", "w"))
    console.print(static.content)
    return console.export_text()


async def test_dialog_writes_prompts_in_a_worker_and_curate_shows_them(store, config):
    run_extract(store, "obsidian", VAULT, config)
    config = cfg(store)
    with scripted_server(question) as start:
        url, script = start([], models=("listed-model",))
        app = make_app(config, store)
        async with app.run_test(size=(140, 45)) as pilot:
            curate = app.screen
            first = curate.current_id
            assert store.get(first).messages[0]["content"] == "Tell me about Keep the old car."
            await pilot.press("B")
            dialog = app.screen
            assert isinstance(dialog, BacktranslateScreen)
            assert "4 note(s) still carry the template prompt" in str(dialog.query_one("#bt-todo").render())
            assert dialog.query_one("#bt-url", Input).value == "http://127.0.0.1:8765/v1"  # the companion
            dialog.query_one("#bt-url", Input).value = url
            dialog.query_one("#bt-limit", Input).value = "many"
            await pilot.click("#bt-start")
            assert "limit: a whole number" in str(dialog.query_one("#bt-report").render())
            dialog.query_one("#bt-limit", Input).value = "3"
            dialog.query_one("#bt-start", Button).press()  # a second click this soon would be a double click
            await pilot.pause()
            await dialog.workers.wait_for_complete()
            assert await wait_until(pilot, lambda: "done" in str(dialog.query_one("#bt-report").render()))
            report = str(dialog.query_one("#bt-report").render())
            assert "backtranslated 3 · failed 0 · skipped 1" in report and "model listed-model" in report
            assert "1 note(s) still carry the template prompt" in report
            assert dialog.query_one("#bt-progress", ProgressBar).progress == 3
            assert "1 note(s) still carry" in str(dialog.query_one("#bt-todo").render())
            assert len(script.requests) == 3
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, CurateScreen) and curate.current_id == first
            shown = text_of(curate.query_one("#example-body", Static))
            assert "What did I write about keep the old car?" in shown and "Tell me about" not in shown
            assert "prompt written by listed-model at 127.0.0.1" in shown and "edited" in shown
            await pilot.press("u")  # undo: the last one written goes back to its template
            await pilot.pause()
            undone = store.get(curate.current_id)
            assert undone.messages[0]["content"].startswith("Tell me about") and not undone.edited
            assert "prompt written by" not in text_of(curate.query_one("#example-body", Static))


async def test_dialog_says_when_the_endpoint_is_not_there(store, config):
    from tests.conftest import free_port

    run_extract(store, "obsidian", VAULT, config)
    app = make_app(cfg(store), store)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("B")
        dialog = app.screen
        dialog.query_one("#bt-url", Input).value = f"http://127.0.0.1:{free_port()}/v1"
        await pilot.click("#bt-start")
        await dialog.workers.wait_for_complete()
        assert await wait_until(pilot, lambda: "cannot reach" in str(dialog.query_one("#bt-report").render()))
        assert not dialog.query_one("#bt-start").disabled
    assert not any(e.edited for e in store.examples())
