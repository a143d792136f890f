"""Train mode against the fake event stream of scripts/fake_trainer.py: the chart gets the points, stop works."""

import subprocess
import sys
from pathlib import Path

from textual.widgets import Input

from tests.conftest import REPO
from tests.tui.helpers import wait_until
from tui.app import make_app
from tui.widgets.loss_chart import LossChart


def fake_launcher(steps, delay):
    def launch(run_dir, resume):
        return subprocess.Popen([sys.executable, str(REPO / "scripts" / "fake_trainer.py"), str(run_dir),
                                 "--steps", str(steps), "--delay", str(delay)] + (["--resume"] if resume else []))
    return launch


async def test_start_draws_live_chart_and_records_the_run(sample_store, config):
    for i in sample_store.ids()[:6]:
        sample_store.set_status(i, "approved")
    app = make_app(config, sample_store, train_launcher=fake_launcher(40, 0.005))
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        await pilot.press("ctrl+t")
        # the first start in a workspace also prepares the base tokenizer to measure lengths (~10-30 s)
        assert await wait_until(pilot, lambda: len(screen.train_points) == 40 and screen.proc is None, seconds=180)
        chart = screen.query_one(LossChart)
        assert [s for s, _ in chart.train_points] == list(range(1, 41))
        assert len(chart.eval_points) == 4
        assert chart.train_points[-1][1] < chart.train_points[0][1]
        runs = sample_store.runs()
        assert len(runs) == 1 and runs[0]["status"] == "completed"
        assert "40/40" in str(screen.query_one("#train-stats").render())


async def test_stop_and_invalid_spec(sample_store, config):
    for i in sample_store.ids()[:6]:
        sample_store.set_status(i, "approved")
    app = make_app(config, sample_store, train_launcher=fake_launcher(2000, 0.01))
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        screen.query_one("#spec-lora_r", Input).value = "-3"
        await pilot.press("ctrl+t")
        assert "lora_r" in str(screen.query_one("#spec-error").render()) and screen.proc is None
        screen.query_one("#spec-lora_r", Input).value = "8"
        await pilot.press("ctrl+t")
        assert await wait_until(pilot, lambda: len(screen.train_points) >= 5, seconds=180)
        await pilot.press("ctrl+x")
        assert await wait_until(pilot, lambda: screen.proc is None)
        assert sample_store.runs()[0]["status"] == "stopped"
        assert len(screen.train_points) < 2000


async def test_length_summary_and_truncation_is_asked_first(sample_store, config):
    import json

    from tui.screens.truncation_confirm import TruncationConfirm

    for i in sample_store.ids()[:6]:
        sample_store.set_status(i, "approved")
    app = make_app(config, sample_store, train_launcher=fake_launcher(3, 0.005))
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        screen.query_one("#spec-max_seq_len", Input).value = "32"
        await pilot.press("ctrl+t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, TruncationConfirm), seconds=180)
        assert "p98" in str(screen.query_one("#train-lengths").render())  # the summary is shown before it starts
        await pilot.press("escape")
        assert await wait_until(pilot, lambda: "not started" in str(screen.query_one("#spec-error").render()))
        assert sample_store.runs() == [] and screen.proc is None

        await pilot.press("ctrl+t")
        assert await wait_until(pilot, lambda: isinstance(app.screen, TruncationConfirm), seconds=120)
        await pilot.click("#truncation-yes")
        assert await wait_until(pilot, lambda: len(sample_store.runs()) == 1 and screen.proc is None, seconds=60)
        run = sample_store.runs()[0]
        assert json.loads((Path(run["run_dir"]) / "spec.json").read_text())["max_seq_len"] == 32


async def test_a_recipe_fills_the_form(sample_store, config):
    from textual.widgets import Select

    app = make_app(config, sample_store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        screen.query_one("#spec-recipe", Select).value = "summaries"
        await pilot.pause()
        assert screen.query_one("#spec-learning_rate", Input).value == "0.0005"
        assert screen.query_one("#spec-max_seq_len", Input).value == "auto"
        spec = screen.read_spec()
        assert spec.recipe == "summaries" and spec.truncation == "middle-of-user" and spec.epochs == 2.0


async def test_processes_and_effective_batch_for_the_form_and_the_running_run(sample_store, config):
    """The form shows batch size × grad accumulation × processes as it is typed; the run being followed shows its
    stored spec's processes and effective batch (after the length check may have moved rows into accumulation)."""
    from textual.widgets import Label, Static

    for i in sample_store.ids()[:6]:
        sample_store.set_status(i, "approved")
    app = make_app(config, sample_store, train_launcher=fake_launcher(5, 0.005))
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        assert "× 1 process" in str(screen.query_one("#spec-batch", Static).render())  # the defaults, at once
        screen.query_one("#spec-batch_size", Input).value = "4"
        screen.query_one("#spec-grad_accum", Input).value = "3"
        screen.query_one("#spec-num_processes", Input).value = "2"
        await pilot.pause()
        shown = str(screen.query_one("#spec-batch", Static).render())
        assert "effective batch 24" in shown and "2 processes" in shown
        screen.query_one("#spec-num_processes", Input).value = "two"
        await pilot.pause()
        assert "effective batch —" in str(screen.query_one("#spec-batch", Static).render())
        screen.query_one("#spec-num_processes", Input).value = "2"
        await pilot.press("ctrl+t")
        assert await wait_until(pilot, lambda: screen.run_id is not None, seconds=180)
        spec = sample_store.get_run(screen.run_id)["spec"]
        assert spec["num_processes"] == 2
        effective = spec["batch_size"] * spec["grad_accum"] * 2
        stats = screen.query_one("#train-stats", Label)
        assert f"2 processes · effective batch {effective} " in str(stats.render())
        assert await wait_until(pilot, lambda: screen.proc is None and "5/5" in str(stats.render()), seconds=60)
        assert f"2 processes · effective batch {effective} " in str(stats.render())  # kept beside the progress
