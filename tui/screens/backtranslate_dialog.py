"""Backtranslate dialog (Curate, B): an LLM writes the request each templated note answers. Base URL (the local
companion by default), model (blank: the first the endpoint lists), a limit, a progress bar and the results. The
run is a thread worker that reports by message; the notes stay the answers, and each new prompt is an edit that
undo (u) takes back."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, ProgressBar, Static

from forge.llm import backtranslate as bt
from forge.store import StoreError
from tui.messages import BacktranslationFinished, BacktranslationProgressed
from tui.screens.job_dialog import JobDialog


def summary_line(r: dict) -> str:
    line = (f"backtranslated {r['done']} · failed {r['failed']} · skipped {r['skipped']} · "
            f"tokens {r['prompt_tokens'] + r['completion_tokens']:,}")
    return line + (f" · model {r['model']}" if r.get("model") else "")


class BacktranslateScreen(JobDialog):
    """Dismisses with the last run's report (None if nothing ran)."""

    START_ID = "bt-start"
    WORKER_UI = {"backtranslate": ("writing prompts", "#bt-report", ("#bt-start",))}  # an error nobody foresaw

    def compose(self) -> ComposeResult:
        cfg = self.app.config
        with Vertical(id="backtranslate-dialog"):
            yield Label("Write prompts for notes with an LLM", id="bt-title")
            yield Static("", id="bt-todo")
            yield Input(bt.companion_url(cfg), placeholder="base URL, e.g. http://127.0.0.1:8765/v1", id="bt-url")
            with Horizontal(id="bt-row"):
                yield Input(cfg.backtranslate.model or "", placeholder="model (blank: the first the endpoint lists)",
                            id="bt-model")
                yield Input("", placeholder="limit (blank: all)", id="bt-limit")
            yield ProgressBar(id="bt-progress", show_eta=True)
            yield Static("", id="bt-report")
            with Horizontal(id="bt-buttons"):
                yield Button("Write prompts", variant="primary", id="bt-start")
                yield Button("Close", id="bt-close")

    def on_mount(self) -> None:
        self.show_todo()

    def show_todo(self) -> None:
        todo, _ = bt.candidates(self.app.store, self.app.config.extract.obsidian)
        self.query_one("#bt-todo", Static).update(
            f"{len(todo)} note(s) still carry the template prompt. Each note stays the answer, word for word; the "
            f"written prompt replaces the template as an edit (undo: u). Notes you decided or edited are left alone.")

    def start(self) -> None:
        report = self.query_one("#bt-report", Static)
        url = self.query_one("#bt-url", Input).value.strip()
        raw = self.query_one("#bt-limit", Input).value.strip()
        if not url.startswith(("http://", "https://")):
            report.update("[red]base URL: give the endpoint's http(s) address[/]")
            return
        try:
            limit = int(raw) if raw else None
            if limit is not None and limit < 0:
                raise ValueError
        except ValueError:
            report.update("[red]limit: a whole number of notes, or blank for all[/]")
            return
        self.query_one("#bt-start", Button).disabled = True
        report.update("writing prompts…")
        self.run_backtranslate(url, self.query_one("#bt-model", Input).value.strip() or None, limit)

    @work(thread=True, exclusive=True, exit_on_error=False, group="backtranslate")
    def run_backtranslate(self, url: str, model: str | None, limit: int | None) -> None:
        # Runs in a thread: it reports by message only, never touching a widget.
        def progress(r: bt.Report) -> None:
            self.post_message(BacktranslationProgressed(r.to_json(), r.total))

        try:
            r = bt.backtranslate(self.app.store, self.app.config, url, model, limit=limit, progress=progress)
        except (StoreError, ValueError) as e:
            self.post_message(BacktranslationFinished(None, str(e)))
        else:
            self.post_message(BacktranslationFinished(r.to_json()))

    def on_backtranslation_progressed(self, message: BacktranslationProgressed) -> None:
        r = message.report
        self.query_one("#bt-progress", ProgressBar).update(total=message.total, progress=r["done"] + r["failed"])
        self.query_one("#bt-report", Static).update(summary_line(r))

    def on_backtranslation_finished(self, message: BacktranslationFinished) -> None:
        self.query_one("#bt-start", Button).disabled = False
        out = self.query_one("#bt-report", Static)
        if message.report is None:
            out.update(f"[red]{message.error}[/]")
            return
        r = self.result = message.report
        lines = [summary_line(r) + " · done"]
        if r["errors"]:
            lines.append(f"last failure: {r['errors'][-1]}")
        if r["error"]:
            lines.append(f"[red]{r['error']}[/]")
        elif r["remaining"]:
            lines.append(f"{r['remaining']} note(s) still carry the template prompt: press Write prompts to go on")
        elif not r["total"]:
            lines.append("no note carries the template prompt: nothing to write")
        out.update("\n".join(lines))
        self.show_todo()
