"""Import dialog: vault, CSV or JSONL, with progress. The extraction runs in a worker thread."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from forge.extract import run_extract
from tui.screens.job_dialog import JobDialog


class ImportScreen(JobDialog):
    """Dismisses with the last import's report (None if nothing was imported)."""

    START_ID = "import-start"

    def __init__(self, default_path: str = "") -> None:
        super().__init__()
        self.default_path = default_path

    def compose(self) -> ComposeResult:
        with Vertical(id="import-dialog"):
            yield Label("Import examples", id="import-title")
            yield Select([("Obsidian vault (folder)", "obsidian"), ("CSV file", "csv"),
                          ("LLM output (JSONL / JSON)", "jsonl")], value="obsidian", allow_blank=False,
                         id="import-kind")
            yield Input(self.default_path, placeholder="path to the vault folder or file", id="import-path")
            with Horizontal(id="csv-columns"):
                yield Input(placeholder="prompt column (auto)", id="prompt-column")
                yield Input(placeholder="response column (auto)", id="response-column")
            yield ProgressBar(id="import-progress", show_eta=True)
            yield Static("", id="import-report")
            with Horizontal(id="import-buttons"):
                yield Button("Import", variant="primary", id="import-start")
                yield Button("Close", id="import-close")

    def on_mount(self) -> None:
        self.query_one("#csv-columns").display = False
        self.query_one("#import-path", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.query_one("#csv-columns").display = event.value == "csv"

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def start(self) -> None:
        kind = self.query_one("#import-kind", Select).value
        path = self.query_one("#import-path", Input).value.strip()
        report = self.query_one("#import-report", Static)
        if not path:
            report.update("Enter a path first.")
            return
        p = Path(path).expanduser()
        if kind == "obsidian" and not p.is_dir():
            report.update(f"{path}: not a folder; a vault is the folder that holds your notes.")
            return
        if kind != "obsidian" and not p.is_file():
            report.update(f"{path}: no such file.")
            return
        options = {}
        if kind == "csv":
            options = {"prompt_column": self.query_one("#prompt-column", Input).value.strip() or None,
                       "response_column": self.query_one("#response-column", Input).value.strip() or None}
        self.query_one("#import-start", Button).disabled = True
        report.update("Importing…")
        self.run_import(str(kind), str(p), options)

    @work(thread=True, exclusive=True, exit_on_error=False, group="import")
    def run_import(self, kind: str, path: str, options: dict) -> None:
        bar = self.query_one("#import-progress", ProgressBar)

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(bar.update, total=total, progress=done)

        try:
            result = run_extract(self.app.store, kind, path, self.app.config, progress, **options)
        except Exception as e:  # a bad file must never take the app down
            self.app.call_from_thread(self._failed, f"{path}: {e}")
            return
        self.app.call_from_thread(self._finished, result, path)

    def _failed(self, message: str) -> None:
        self.query_one("#import-report", Static).update(f"[red]Import failed:[/] {message}")
        self.query_one("#import-start", Button).disabled = False

    def _finished(self, result: dict, path: str) -> None:
        lines = [f"added {result['added']} · updated {result['updated']} · unchanged {result['unchanged']}"
                 f" · kept {result['kept']} · skipped {len(result['skipped'])}"]
        lines += [f"  skipped {s['source']}: {s['reason']}" for s in result["skipped"][:8]]
        self.query_one("#import-report", Static).update("\n".join(lines))
        self.query_one("#import-start", Button).disabled = False
        self.result = result
