"""Screen actions that must always work (start, stop, resume, export, evaluate, run, quit) work while a form field
has focus, as a new user tries them: type a value, then press the key. (Companion's ctrl+s / ctrl+w with the chat
input focused: tests/tui/test_companion_chat.py.)"""

from textual.widgets import DataTable, Input, Select

from tests.tui.helpers import wait_until
from tests.tui.test_train_screen import fake_launcher
from tui.app import make_app
from tui.screens.eval import EvalScreen
from tui.screens.models import ModelsScreen


def row_status(screen, run_id: str) -> str:
    return str(screen.query_one("#run-history", DataTable).get_row(run_id)[1])


async def test_train_start_stop_resume_with_the_max_steps_field_focused(sample_store, config):
    for i in sample_store.ids()[:6]:
        sample_store.set_status(i, "approved")
    app = make_app(config, sample_store, train_launcher=fake_launcher(3000, 0.01))
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        field = screen.query_one("#spec-max_steps", Input)
        field.focus()
        field.value = ""
        await pilot.press(*"3000", "ctrl+t")
        # (120 s: the start first measures the examples' lengths with the base model's tokenizer)
        assert await wait_until(pilot, lambda: len(screen.train_points) >= 3, 120), (
            str(screen.query_one("#spec-error").render()), [n.message for n in app._notifications])
        run_id = screen.run_id
        assert row_status(screen, run_id) == "running"  # not "created": the row follows the runner
        assert screen.active_bindings["ctrl+x"].binding.action == "stop"  # the footer offers Stop
        assert field.has_focus
        await pilot.press("ctrl+x")  # an Input binds ctrl+x to "cut": the screen's Stop comes first
        assert await wait_until(pilot, lambda: screen.proc is None)
        assert field.value == "3000"  # nothing was cut
        assert sample_store.get_run(run_id)["status"] == "stopped" and row_status(screen, run_id) == "stopped"
        stopped_at = len(screen.train_points)
        await pilot.press("ctrl+r")
        assert await wait_until(pilot, lambda: len(screen.train_points) > stopped_at + 2)
        assert row_status(screen, run_id) == "running"
        await pilot.press("ctrl+x")
        assert await wait_until(pilot, lambda: screen.proc is None)
        assert sample_store.get_run(run_id)["status"] == "stopped"


async def test_models_export_and_evaluate_with_the_quant_picker_focused(store, config):
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f5")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        table = screen.query_one("#model-table", DataTable)
        assert await wait_until(pilot, lambda: table.row_count > 0, 60)  # the bundled base
        screen.query_one("#export-quant", Select).focus()
        await pilot.press("ctrl+e")
        assert any("no finished run to export" in n.message for n in app._notifications)
        await pilot.press("ctrl+v")
        assert await wait_until(pilot, lambda: isinstance(app.screen, EvalScreen), 10)


async def test_eval_run_with_the_file_field_focused(store, config, tmp_path):
    app = make_app(config, store)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("f7")
        screen = app.screen
        assert await wait_until(pilot, lambda: screen.query_one("#eval-model", Select).value == "base", 60)
        field = screen.query_one("#eval-file", Input)
        field.value = str(tmp_path / "missing.jsonl")  # the run starts, and stops at once on the missing file
        field.focus()
        await pilot.press("ctrl+g")
        status = screen.query_one("#eval-status")
        assert await wait_until(pilot, lambda: "no such file" in str(status.render()), 20), str(status.render())
        assert not screen.query_one("#eval-run").disabled


async def test_quit_with_a_form_field_focused(sample_store, config):
    app = make_app(config, sample_store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        app.screen.query_one("#spec-learning_rate", Input).focus()
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app._exit_renderables is not None or not app.is_running or app.return_code is not None
