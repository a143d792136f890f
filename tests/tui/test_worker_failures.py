"""A worker that raises what nobody foresaw is reported in the screen that owns it (a toast and its status line)
and the controls it disabled work again. The fault is injected by making the forge call raise."""

from rich.console import Console
from textual.widgets import Button, Static

import forge.eval
import forge.models.export
import forge.train.runs
from tests.tui.helpers import wait_until
from tests.tui.test_eval_screen import seed
from tui.app import make_app
from tui.screens.models import ModelsScreen


def text_of(widget) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))
    console.print(widget.render())
    return " ".join(console.export_text().split())


def toasts(app) -> list[str]:
    return [n.message for n in app._notifications]


def finished_run(store, config) -> str:
    run_dir = config.workspace_path() / "runs" / "run-1"
    run_dir.mkdir(parents=True)
    store.create_run("run-1", str(run_dir), {}, {})
    store.update_run("run-1", "completed", {"step": 2, "last_loss": 1.5})
    return "run-1"


async def test_export_that_raises_mid_merge_is_reported_and_export_works_again(store, config, monkeypatch):
    finished_run(store, config)

    def export_run(store, config, run_id, quant, progress):
        progress("merge", "merging the adapter into the base model")
        raise RuntimeError("CUDA out of memory while merging")

    monkeypatch.setattr(forge.models.export, "export_run", export_run)
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f5")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        await pilot.press("ctrl+e")
        status = screen.query_one("#export-status", Static)
        assert await wait_until(pilot, lambda: "export failed" in text_of(status), 10), text_of(status)
        assert "CUDA out of memory while merging" in text_of(status)  # not stuck at "[merge]…"
        assert any(t.startswith("export failed: CUDA out of memory") for t in toasts(app))
        assert not screen.query_one("#export-run", Button).disabled
        await app.workers.wait_for_complete()


async def test_eval_that_raises_is_reported_and_run_works_again(store, config, monkeypatch):
    seed(store, config)

    def evaluate(*a, **k):
        raise RuntimeError("llama.cpp: failed to load model")

    monkeypatch.setattr(forge.eval, "evaluate", evaluate)
    app = make_app(config, store)
    async with app.run_test(size=(150, 45)) as pilot:
        await pilot.press("f7")
        screen = app.screen
        await pilot.press("ctrl+g")
        status = screen.query_one("#eval-status")
        assert await wait_until(pilot, lambda: "eval failed: llama.cpp: failed to load model" in text_of(status), 10)
        assert any("eval failed" in t for t in toasts(app))
        assert not screen.query_one("#eval-run", Button).disabled
        await app.workers.wait_for_complete()


async def test_train_start_that_raises_is_reported(sample_store, config, monkeypatch):
    def create_run(*a, **k):
        raise RuntimeError("disk quota exceeded")

    monkeypatch.setattr(forge.train.runs, "create_run", create_run)
    app = make_app(config, sample_store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        await pilot.press("ctrl+t")
        error = screen.query_one("#spec-error")
        assert await wait_until(pilot, lambda: "disk quota exceeded" in text_of(error), 10)
        assert any("starting the run failed: disk quota exceeded" in t for t in toasts(app))
        assert screen.proc is None and not screen.query_one("#train-start", Button).disabled


async def test_dataset_export_dialog_that_raises_is_reported(sample_store, config, monkeypatch):
    import tui.screens.export_dialog

    def export_dataset(*a, **k):
        raise RuntimeError("the tokenizer crashed")

    monkeypatch.setattr(tui.screens.export_dialog, "export_dataset", export_dataset)
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("x")
        dialog = app.screen
        await pilot.click("#export-start")
        report = dialog.query_one("#export-report")
        assert await wait_until(pilot, lambda: "dataset export failed: the tokenizer crashed" in text_of(report), 10)
        assert not dialog.query_one("#export-start", Button).disabled
