"""Preference examples in the Curate mode: a pair's chosen and rejected answers side by side, a KTO example's
label, and an edit of a pair that changes the chosen answer and keeps the rejected one."""

import json

from rich.console import Console
from textual.widgets import Static, TextArea

from forge.data.extract import run_extract
from tui.app import make_app
from tui.screens.curate import CurateScreen
from tui.screens.edit import EditScreen


def text_of(static: Static) -> str:
    console = Console(width=120, record=True, file=open("/dev/null", "w"))
    console.print(static.content)
    return console.export_text()


def seed(store, config, tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "How long should I knead dough?", "chosen": "About ten minutes, until it is smooth.",
         "rejected": "Knead it for an hour, the longer the better."},
        {"prompt": "Wish me luck.", "completion": "Good luck, you have prepared well!", "label": True},
        {"input": "Capital of Spain?", "output": "Madrid."}]) + "\n")
    assert run_extract(store, "jsonl", path, config)["added"] == 3
    return [e.id for e in store.examples()]


async def test_pair_side_by_side_and_edit_keeps_the_rejected_answer(store, config, tmp_path):
    pair, kto, plain = seed(store, config, tmp_path)
    app = make_app(config, store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, CurateScreen) and screen.current_id == pair
        shown = text_of(screen.query_one("#example-body", Static))
        assert "preference pair" in shown
        # the two answers are two panels on the same rows, chosen left, rejected right
        top = next(line for line in shown.splitlines() if "chosen" in line)
        assert "rejected" in top and top.index("chosen") < top.index("rejected")
        row = next(line for line in shown.splitlines() if "About ten minutes" in line)
        assert "Knead it for an hour" in row
        assert "How long should I knead dough?" in shown  # the prompt above them

        await pilot.press("e")
        assert isinstance(app.screen, EditScreen)
        assert "chosen" in str(app.screen.query_one(".role-assistant").render())
        assert "Knead it for an hour" in str(app.screen.query_one("#edit-rejected", Static).render())
        app.screen.query_one("#turn-1", TextArea).text = "Ten minutes by hand; stop when it springs back."
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, CurateScreen)
        ex = store.get(pair)
        assert ex.edited and ex.messages[-1]["content"] == "Ten minutes by hand; stop when it springs back."
        assert ex.messages[0]["content"] == "How long should I knead dough?"
        assert ex.rejected == "Knead it for an hour, the longer the better."
        shown = text_of(screen.query_one("#example-body", Static))
        assert "springs back" in shown and "Knead it for an hour" in shown

        await pilot.press("j")
        assert screen.current_id == kto
        shown = text_of(screen.query_one("#example-body", Static))
        assert "KTO desirable" in shown and "assistant · desirable" in shown and "rejected" not in shown

        await pilot.press("j")
        assert screen.current_id == plain
        shown = text_of(screen.query_one("#example-body", Static))
        assert "Madrid." in shown
        assert not any(w in shown for w in ("chosen", "rejected", "KTO", "pair"))
        await pilot.press("e")  # a plain example's editor has no rejected answer
        assert isinstance(app.screen, EditScreen) and not app.screen.query("#edit-rejected")
        await pilot.press("escape")


async def test_the_counts_bar_shows_the_pairs_by_source(store, config, tmp_path):
    pair, kto, plain = seed(store, config, tmp_path)
    app = make_app(config, store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        bar = screen.query_one("#counts", Static)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "pair" not in text_of(bar)  # nothing approved yet: no pair to train on
        await pilot.press("a")  # approve the imported pair
        await pilot.pause(0.7)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "⇄ 1 pair (import 1)" in text_of(bar)
        await pilot.press("u")  # undo: the pair is gone again
        await pilot.pause(0.7)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "pair" not in text_of(bar)
