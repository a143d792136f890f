"""Key presses in the Curate mode change the store, through the same factory the CLI uses."""

from textual.widgets import Checkbox, Input, SelectionList, TextArea

from tests.conftest import SAMPLE_VAULT
from tui.app import make_app
from tui.screens.curate import CurateScreen
from tui.screens.edit import EditScreen
from tui.screens.import_dialog import ImportScreen


async def test_approve_reject_undo_redo_with_single_keys(sample_store, config):
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, CurateScreen)
        first, second = screen.ids[0], screen.ids[1]
        await pilot.press("a")
        assert sample_store.get(first).status == "approved"
        assert screen.current_id == second  # moved on only after the commit
        await pilot.press("r")
        assert sample_store.get(second).status == "rejected"
        assert screen.counts["approved"] == 1 and screen.counts["rejected"] == 1
        await pilot.press("u")
        assert sample_store.get(second).status == "pending"
        assert screen.current_id == second  # undo brings the undone example back on screen
        await pilot.press("u")
        assert sample_store.get(first).status == "pending"
        await pilot.press("U")
        assert sample_store.get(first).status == "approved"
        await pilot.press("k", "k", "j")
        assert screen.index == 1


async def test_edit_saves_and_refuses_empty_turns(sample_store, config):
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)) as pilot:
        eid = app.screen.current_id
        await pilot.press("e")
        assert isinstance(app.screen, EditScreen)
        answer = app.screen.query_one("#turn-1", TextArea)
        answer.text = ""
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, EditScreen)  # refused: the dialog stays open
        assert "empty" in str(app.screen.query_one("#edit-error").render())
        answer.text = "My own better answer."
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, CurateScreen)
        ex = sample_store.get(eid)
        assert ex.edited and ex.messages[-1]["content"] == "My own better answer."
        await pilot.press("e", "escape")  # cancel keeps the text
        assert sample_store.get(eid).messages[-1]["content"] == "My own better answer."
        await pilot.press("u")
        assert not sample_store.get(eid).edited


async def test_search_and_status_filter(sample_store, config):
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.press("slash")
        await pilot.press(*"sourdough")
        assert len(screen.ids) == 1
        assert "Sourdough" in sample_store.get(screen.current_id).note_path
        await pilot.press("enter", "a")  # back on the example, keys act again
        assert sample_store.get(screen.current_id).status == "approved"
        screen.query_one("#search", Input).value = ""
        await pilot.pause()
        await pilot.press("s")  # pending → approved
        assert screen.status_filter == "approved" and len(screen.ids) == 1


async def test_import_dialog_runs_in_a_worker_and_refreshes(store, config, tmp_path):
    app = make_app(config, store)
    async with app.run_test(size=(120, 40)) as pilot:
        assert app.screen.ids == []
        await pilot.press("i")
        assert isinstance(app.screen, ImportScreen)
        app.screen.query_one("#import-path", Input).value = str(SAMPLE_VAULT)
        await pilot.click("#import-start")  # first the survey: tags and folders to pick
        await app.screen.workers.wait_for_complete()
        await pilot.pause()
        tags = app.screen.query_one("#survey-tags", SelectionList)
        assert {"reflection", "decision", "learning"} <= set(tags.selected)  # config.json's tags pre-selected
        assert store.counts()["total"] == 0
        await import_picked(app, pilot)
        assert "added" in str(app.screen.query_one("#import-report").render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, CurateScreen)
        assert len(app.screen.ids) == store.counts()["pending"] >= 30


def test_the_import_report_names_notes_read_despite_frontmatter_yaml_refuses(store, config):
    from pathlib import Path

    from forge.data.extract import run_extract
    from tui.screens.import_dialog import report_lines

    messy = Path(__file__).resolve().parent.parent / "data" / "vaults" / "messy"
    lines = report_lines(run_extract(store, "obsidian", messy, config, all_notes=True))
    repaired = next(line for line in lines if "frontmatter that is not valid YAML" in line)
    assert repaired.startswith("3 note(s)") and "read key by key" in repaired and "line 2: `" in repaired


async def test_import_dialog_names_a_bad_path(store, config, tmp_path):
    app = make_app(config, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("i")
        app.screen.query_one("#import-path", Input).value = str(tmp_path / "nope")
        await pilot.click("#import-start")
        await pilot.pause()
        assert "not a folder" in str(app.screen.query_one("#import-report").render())
        assert store.counts()["total"] == 0


async def test_command_palette_lists_every_curate_action(sample_store, config):
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)):
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Approve example", "Reject example", "Edit example", "Undo", "Redo", "Import…",
                "Export dataset…"} <= titles
        approve = next(c for c in app.get_system_commands(app.screen) if c.title == "Approve example")
        eid = app.screen.current_id
        await approve.callback()
        assert sample_store.get(eid).status == "approved"


async def test_generate_dialog_adds_pending_examples(store, config, tmp_path):
    """The dialog against a tiny OpenAI-compatible server on loopback."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from textual.widgets import Input

    from tui.screens.generate_dialog import GenerateScreen

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            content = json.dumps({"examples": [{"input": "remind me to stretch at 3", "output": "stretch | at 3"},
                                               {"input": "call bob friday", "output": "call bob | friday"}]})
            body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}],
                               "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        app = make_app(config, store)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("g")
            assert isinstance(app.screen, GenerateScreen)
            app.screen.query_one("#gen-url", Input).value = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
            app.screen.query_one("#gen-model", Input).value = "m"
            app.screen.query_one("#gen-n", Input).value = "2"
            app.screen.query_one("#gen-topic", Input).value = "reminders"
            await pilot.click("#gen-start")
            await app.screen.workers.wait_for_complete()
            await pilot.pause()
            assert "added 2" in str(app.screen.query_one("#gen-report").render())
            await pilot.press("escape")
            await pilot.pause()
            assert len(app.screen.ids) == 2 and store.counts()["pending"] == 2
    finally:
        httpd.shutdown()


async def test_export_dialog_writes_the_dataset(sample_store, config, tmp_path):
    from textual.widgets import Input

    from tui.screens.export_dialog import ExportScreen

    for i in sample_store.ids()[:10]:
        sample_store.set_status(i, "approved")
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("x")
        assert isinstance(app.screen, ExportScreen)
        app.screen.query_one("#export-out", Input).value = str(tmp_path / "ds")
        await pilot.click("#export-start")
        await app.screen.workers.wait_for_complete()
        await pilot.pause()
        assert "train 8 · val 1 · test 1" in str(app.screen.query_one("#export-report").render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, CurateScreen)
    assert len((tmp_path / "ds" / "train.jsonl").read_text().splitlines()) == 8


async def open_survey(app, pilot, vault) -> None:
    """Open the import dialog on `vault` and let its survey finish."""
    await pilot.press("i")
    app.screen.query_one("#import-path", Input).value = str(vault)
    await pilot.click("#import-start")
    await app.screen.workers.wait_for_complete()
    await pilot.pause()


async def import_picked(app, pilot) -> None:
    """Import what the survey has picked, once it is laid out, and let the import finish."""
    await survey_laid_out(app, pilot)
    await pilot.click("#import-start")
    await app.screen.workers.wait_for_complete()
    await pilot.pause()


async def survey_laid_out(app, pilot) -> None:
    """Wait until the survey is shown and laid out, so a click lands on the Import button where it now is."""
    from textual.widgets import Button

    from tests.tui.helpers import wait_until

    button = app.screen.query_one("#import-start", Button)
    assert await wait_until(pilot, lambda: str(button.label) == "Import" and not button.disabled)
    await app.screen.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def test_vault_survey_picks_tags_and_folders_remembered_and_an_empty_import_says_what_to_do(store, config):
    """A vault whose notes carry none of config.json's tags: the survey says so, lists the vault's tags and checks
    All notes (an Import would otherwise take nothing); unchecked with no tag picked, the import finds nothing and
    says what to do with the dialog's controls, as does the Curate screen left behind; the person's pick imports
    those notes and is remembered for the next survey."""
    from tests.forge.data.extract.test_extract_report import MESSY
    from tui.widgets.example_view import ExampleView

    config.extract.obsidian.include_tags = ["retrospective"]
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        # First: import with the configured tags, which this vault does not use → nothing, and Curate says why.
        await open_survey(app, pilot, MESSY)
        summary = str(app.screen.query_one("#survey-summary").render())
        assert "None of" in summary and "#retrospective" in summary and "All notes is checked" in summary
        assert app.screen.query_one("#all-notes", Checkbox).value is True
        tags = app.screen.query_one("#survey-tags", SelectionList)
        assert "journal" in [tags.get_option_at_index(i).value for i in range(tags.option_count)]
        app.screen.query_one("#all-notes", Checkbox).value = False
        tags.deselect_all()
        await import_picked(app, pilot)
        report = str(app.screen.query_one("#import-report").render())
        assert "#journal" in report and "tags to take" in report and "All notes" in report
        assert "--tag" not in report and "--all-notes" not in report  # the dialog's controls, not CLI flags
        await pilot.press("escape")
        await pilot.pause()
        assert store.counts()["total"] == 0
        shown = str(app.screen.query_one("#example-body").render()) if app.screen.query("#example-body") else \
            str(app.screen.query_one(ExampleView).render())
        assert "found nothing" in shown and "#journal" in shown
        # Second: pick #journal and leave out Private/ → imported and remembered.
        await open_survey(app, pilot, MESSY)
        tags = app.screen.query_one("#survey-tags", SelectionList)
        app.screen.query_one("#all-notes", Checkbox).value = False
        tags.deselect_all()
        tags.select("journal")
        app.screen.query_one("#survey-folders", SelectionList).deselect("Private")
        await import_picked(app, pilot)
        paths = {e.note_path for e in store.examples()}
        assert paths and not any(p.startswith("Private/") for p in paths) and "Journal/2026-03-01.md" in paths
        await pilot.press("escape")
        await pilot.pause()
        await open_survey(app, pilot, MESSY)
        assert list(app.screen.query_one("#survey-tags", SelectionList).selected) == ["journal"]
        assert "Private" not in app.screen.query_one("#survey-folders", SelectionList).selected
        assert "last time" in str(app.screen.query_one("#survey-summary").render())


async def test_keys_page_through_the_store_by_keyset_without_loading_every_id(sample_store, config, monkeypatch):
    """With pages of 4 ids and a window of at most 8, j and k cross page boundaries both ways and the position
    stays right; an example deleted meanwhile is skipped; the position past the count cap is finished by a
    worker; a filter with no rows says so."""
    from tests.tui.helpers import wait_until
    from tui.screens import curate as curate_screen

    monkeypatch.setattr(curate_screen, "PAGE", 4)
    monkeypatch.setattr(curate_screen, "WINDOW_MAX", 8)
    pending = sample_store.ids(status="pending")
    n = len(pending)
    assert n > 20
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert len(screen.ids) == 4 and screen.position_text() == f"1/{n}"
        for _ in range(20):
            await pilot.press("j")
        assert screen.current_id == pending[20] and screen.position_text() == f"21/{n}"
        assert len(screen.ids) <= 8  # never more than the window
        for _ in range(20):
            await pilot.press("k")
        assert screen.current_id == pending[0] and screen.position_text() == f"1/{n}"
        await pilot.press("k")  # the first: stays
        assert screen.current_id == pending[0]
        with sample_store.transaction() as conn:  # deleted by another process while on screen
            conn.execute("DELETE FROM examples WHERE id=?", (pending[1],))
        await pilot.press("j")
        assert screen.current_id == pending[2] and screen.position_text() == f"2/{n - 1}"
        screen.count_cap = 5  # the position of the last one is more than the cap: counted off the key path
        screen.reload(keep_id=pending[-1])
        assert await wait_until(pilot, lambda: screen.position_text() == f"{n - 1}/{n - 1}"), screen.position_text()
        await pilot.press("j")  # the last: stays
        assert screen.current_id == pending[-1]
        await pilot.press("a")
        assert sample_store.get(pending[-1]).status == "approved" and screen.current_id == pending[-1]
        await pilot.press("slash", *"zzyzx", "enter")
        assert screen.current_id is None and screen.total == 0
        assert "Nothing matches" in str(screen.query_one("#example-body").render())


async def test_a_key_press_renders_the_example_once(sample_store, config, monkeypatch):
    """Textual measures a widget's height and then paints it, and each pass rendered the example's markdown: every
    key press rendered every turn three times. Now each turn is rendered once per key press, and again at a new width."""
    from rich.markdown import Markdown

    widths = []
    original = Markdown.__rich_console__

    def counting(self, console, options):
        widths.append(options.max_width)
        yield from original(self, console, options)

    monkeypatch.setattr(Markdown, "__rich_console__", counting)
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        await pilot.pause()
        widths.clear()
        await pilot.press("j")
        await pilot.pause()
        turns = len(sample_store.get(screen.current_id).messages)
        assert len(widths) == turns and len(set(widths)) == 1
        assert f"#{screen.current_id}" in app.export_screenshot()
        wide = widths[0]
        widths.clear()
        await pilot.resize_terminal(90, 40)
        await pilot.pause()
        assert len(widths) == turns and widths[0] == wide - 30  # rendered again, at the new width
        assert f"#{screen.current_id}" in app.export_screenshot()


async def test_a_vault_import_offers_the_voice_recipe_and_the_train_form_starts_from_it(store, config):
    """After a vault import (the person's own writing) with the offer left checked, the Train form opens on the
    voice recipe: its select, its epochs and its decoding defaults in the spec the form builds."""
    from textual.widgets import Select

    from forge.train.recipes import recipe_spec

    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await open_survey(app, pilot, SAMPLE_VAULT)
        assert app.screen.query_one("#voice-recipe", Checkbox).value is True
        await import_picked(app, pilot)
        assert store.counts()["total"] > 0
        assert "voice recipe" in str(app.screen.query_one("#import-report").render())
        await pilot.press("escape")
        await pilot.pause()
        await app.switch_mode("train")
        await pilot.pause()
        assert app.screen.query_one("#spec-recipe", Select).value == "voice"
        assert float(app.screen.query_one("#spec-epochs", Input).value) == recipe_spec("voice")["epochs"]
        spec = app.screen.read_spec()
        assert spec.recipe == "voice" and spec.decoding and spec.decoding.repeat_penalty == 1.15
        app.screen.query_one("#spec-recipe", Select).clear()  # the person picks no recipe: nothing of voice stays
        await pilot.pause()
        spec = app.screen.read_spec()
        assert spec.recipe is None and spec.decoding is None
