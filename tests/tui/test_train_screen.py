"""Train mode against the fake event stream of scripts/fake_trainer.py: the chart gets the points, stop works."""

import subprocess
import sys

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
        assert await wait_until(pilot, lambda: len(screen.train_points) == 40 and screen.proc is None)
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
        assert await wait_until(pilot, lambda: len(screen.train_points) >= 5)
        await pilot.press("ctrl+x")
        assert await wait_until(pilot, lambda: screen.proc is None)
        assert sample_store.runs()[0]["status"] == "stopped"
        assert len(screen.train_points) < 2000
