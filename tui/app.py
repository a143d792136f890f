"""The forge app: modes and global bindings only. Each screen owns its own workers and state."""

from __future__ import annotations

import gc
from functools import partial
from typing import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from forge.config import REPO_ROOT, Config
from forge.store import Store
from tui.companion_process import CompanionProcess
from tui.messages import ModelSwapped
from tui.screens.companion import CompanionScreen
from tui.screens.curate import CurateScreen
from tui.screens.dedup import DedupScreen
from tui.screens.eval import EvalScreen
from tui.screens.models import ModelsScreen

# Each screen action offered in the command palette: (title, help, action name).
CURATE_COMMANDS = [
    ("Approve example", "Approve the example on screen (a)", "approve"),
    ("Reject example", "Reject the example on screen (r)", "reject"),
    ("Edit example", "Edit each turn of the example (e)", "edit"),
    ("Undo", "Undo the latest decision (u)", "undo"),
    ("Redo", "Redo the latest undone decision (U)", "redo"),
    ("Next example", "Move to the next example (j)", "next"),
    ("Previous example", "Move to the previous example (k)", "previous"),
    ("Search", "Full-text search over examples (/)", "search"),
    ("Filter by tag", "Show only examples with a tag (t)", "focus_tag"),
    ("Filter by source", "Show only examples from a source (o)", "focus_source"),
    ("Import…", "Import a vault, CSV or JSONL file (i)", "import"),
    ("Export dataset…", "Write train/val/test JSONL from approved examples (x)", "export"),
    ("Generate examples…", "New pending examples from an OpenAI-compatible LLM (g)", "generate"),
    ("Write prompts for notes…", "An LLM writes the request each templated note answers (B)", "backtranslate"),
]


class ForgeApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "forge"
    MODES = {"curate": CurateScreen, "dedup": DedupScreen, "train": lambda: _train_screen(), "models": ModelsScreen,
             "companion": CompanionScreen, "eval": EvalScreen}
    BINDINGS = [
        Binding("f2", "switch_mode('curate')", "Curate"),
        Binding("f3", "switch_mode('dedup')", "Dedup"),
        Binding("f4", "switch_mode('train')", "Train"),
        Binding("f5", "switch_mode('models')", "Models"),
        Binding("f6", "switch_mode('companion')", "Companion"),
        Binding("f7", "switch_mode('eval')", "Eval"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, config: Config, store: Store, train_launcher=None, train_defaults: dict | None = None) -> None:
        super().__init__()
        self.config = config
        self.store = store
        self.default_import_path = str(REPO_ROOT / "data" / "sample_vault")
        # How the Train mode starts a runner process: (run_dir, resume) -> Popen. Tests pass the fake trainer.
        self.train_launcher = train_launcher or _launch_runner
        self.train_defaults = train_defaults or {}
        # The companion server this UI starts (or finds running on the configured port); stopped on exit.
        self.companion = CompanionProcess(config)
        self.eval_preselect: str | None = None
        self.offered_recipe: str | None = None  # a recipe an import offered; the Train form picks it up once

    def offer_recipe(self, name: str) -> None:
        """The Train form picks recipe `name` in its select when it is next shown (the import dialog offers the
        voice recipe after a vault); the person may pick another or none, and then nothing of it stays."""
        self.offered_recipe = name

    def on_model_swapped(self, message: ModelSwapped) -> None:
        r = message.result
        self.notify(f"companion now serves {r['model']} (was {r['previous']}); swap took {r['swap_ms'] / 1000:.1f} s, "
                    "no request dropped")

    def on_mount(self) -> None:
        self.switch_mode("curate")

    def switch_mode(self, mode: str):
        waiter = super().switch_mode(mode)
        self.call_after_refresh(self.settle_heap)  # a mode's first visit imports its libraries (the chart, torch…)
        return waiter

    @staticmethod
    def settle_heap() -> None:
        """Collect, then freeze what is alive (gc.freeze): the modules, widgets and caches built so far are left
        out of every later collection. Python's full collection walks every tracked object, and with forge's
        libraries loaded that took 50-80 ms, every few hundred key presses, inside a key press: it was the whole
        of Curate's slow tail. Called where a pause is expected: the first frame, a mode switch, a library loaded
        in a worker (the tokenizer)."""
        gc.collect()
        gc.freeze()

    def on_unmount(self) -> None:
        gc.unfreeze()  # back to the collector once the app closes (the tests open many apps in one process)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Mode: Curate", "Review examples one by one (F2)", partial(self.switch_mode, "curate"))
        yield SystemCommand("Mode: Dedup", "Review near-duplicate clusters (F3)", partial(self.switch_mode, "dedup"))
        yield SystemCommand("Mode: Train", "Train a LoRA adapter with a live loss chart (F4)",
                            partial(self.switch_mode, "train"))
        yield SystemCommand("Mode: Models", "Export runs to GGUF; the model registry (F5)",
                            partial(self.switch_mode, "models"))
        yield SystemCommand("Mode: Companion", "Serve a model, its health, a chat playground (F6)",
                            partial(self.switch_mode, "companion"))
        yield SystemCommand("Mode: Eval", "Tuned vs base side by side, with votes (F7)", partial(self.switch_mode, "eval"))
        if isinstance(screen, CurateScreen):
            for title, help_text, action in CURATE_COMMANDS:
                yield SystemCommand(title, help_text, partial(screen.run_action, action))
            for status in (None, "pending", "approved", "rejected"):
                yield SystemCommand(f"Show {status or 'all'} examples", f"Status filter: {status or 'all'}",
                                    partial(screen.set_status_filter, status))


def _train_screen():
    # Imported on first use: the chart library costs ~0.35 s that the first frame should not pay.
    from tui.screens.train import TrainScreen

    return TrainScreen()


def _launch_runner(run_dir, resume: bool):
    from forge.train.runs import launch

    return launch(run_dir, resume)


def make_app(config: Config, store: Store, train_launcher=None, train_defaults: dict | None = None) -> ForgeApp:
    """The factory the CLI and the tests share."""
    return ForgeApp(config, store, train_launcher, train_defaults)
