"""Dataset export dialog: approved examples → train/val/test JSONL in a folder of the workspace."""

from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from forge.data.dataset import export_dataset
from forge.store import StoreError
from tui.messages import DatasetExported
from tui.screens.job_dialog import JobDialog


class ExportScreen(JobDialog):
    START_ID = "export-start"
    WORKER_UI = {"export": ("dataset export", "#export-report", ("#export-start",))}

    def __init__(self, default_out: str) -> None:
        super().__init__()
        self.default_out = default_out

    def compose(self) -> ComposeResult:
        d = self.app.config.dataset
        with Vertical(id="export-dialog"):
            yield Label("Export dataset (approved examples)", id="export-title")
            yield Input(self.default_out, id="export-out", placeholder="output folder")
            with Horizontal(id="export-options"):
                yield Input(str(d.val), id="export-val", placeholder="val fraction")
                yield Input(str(d.test), id="export-test", placeholder="test fraction")
                yield Input(str(d.seed), id="export-seed", placeholder="seed")
                yield Select([("chat", "chat"), ("alpaca", "alpaca")], value=d.format, allow_blank=False,
                             id="export-format")
            yield Static("", id="export-report")
            with Horizontal(id="export-buttons"):
                yield Button("Export", variant="primary", id="export-start")
                yield Button("Close", id="export-close")

    def start(self) -> None:
        report = self.query_one("#export-report", Static)
        try:
            val = float(self.query_one("#export-val", Input).value)
            test = float(self.query_one("#export-test", Input).value)
            seed = int(self.query_one("#export-seed", Input).value)
        except ValueError:
            report.update("[red]val and test must be fractions like 0.1, seed a whole number[/]")
            return
        out = self.query_one("#export-out", Input).value.strip()
        fmt = str(self.query_one("#export-format", Select).value)
        report.update("Exporting…")
        self.query_one("#export-start", Button).disabled = True
        self.run_export(out, val, test, seed, fmt)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def run_export(self, out: str, val: float, test: float, seed: int, fmt: str) -> None:
        try:
            r = export_dataset(self.app.store, out, self.app.config, val, test, seed, fmt)
        except (StoreError, OSError) as e:
            self.post_message(DatasetExported(None, str(e)))
            return
        self.post_message(DatasetExported({**r, "out": out}))

    def on_dataset_exported(self, message: DatasetExported) -> None:
        self.query_one("#export-start", Button).disabled = False
        report = self.query_one("#export-report", Static)
        if message.report is None:
            report.update(f"[red]{escape(message.error)}[/]")
            return
        r = self.result = message.report
        report.update(f"train {r['train']} · val {r['val']} · test {r['test']} → {escape(r['out'])}\n"
                      f"dataset hash {r['dataset_hash'][:16]}…")
