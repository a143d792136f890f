"""Generate dialog: new pending examples from an OpenAI-compatible endpoint, with progress and a running token
count. The API key comes from the environment variable named in config; this dialog never asks for or shows it."""

from __future__ import annotations

import os

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Static

from forge.llm import generate as gen
from forge.store import StoreError
from tui.messages import GenerationFinished, GenerationProgressed
from tui.screens.job_dialog import JobDialog


class GenerateScreen(JobDialog):
    """Dismisses with the last run's report (None if nothing ran)."""

    START_ID = "gen-start"
    WORKER_UI = {"generate": ("generation", "#gen-report", ("#gen-start",))}

    def compose(self) -> ComposeResult:
        g = self.app.config.generate
        key_state = "set" if os.environ.get(g.api_key_env) else "not set (fine for local servers)"
        with Vertical(id="generate-dialog"):
            yield Label("Generate examples with an LLM", id="generate-title")
            yield Input(placeholder="base URL, e.g. https://openrouter.ai/api/v1 or http://127.0.0.1:8080/v1",
                        id="gen-url")
            with Horizontal(id="gen-row"):
                yield Input(g.model or "", placeholder="model", id="gen-model")
                yield Input("20", placeholder="how many", id="gen-n")
            yield Input(placeholder="topic, e.g. informal reminders with a time → '<task> | <when>'", id="gen-topic")
            yield Checkbox("variations of approved examples instead", id="gen-from-approved")
            yield Label(f"API key from ${g.api_key_env}: {key_state}", id="gen-key")
            yield ProgressBar(id="gen-progress", show_eta=True)
            yield Static("", id="gen-report")
            with Horizontal(id="generate-buttons"):
                yield Button("Generate", variant="primary", id="gen-start")
                yield Button("Close", id="gen-close")

    def start(self) -> None:
        report = self.query_one("#gen-report", Static)
        url = self.query_one("#gen-url", Input).value.strip()
        try:
            n = int(self.query_one("#gen-n", Input).value)
        except ValueError:
            report.update("[red]how many: a whole number[/]")
            return
        if not url.startswith(("http://", "https://")):
            report.update("[red]base URL: give the endpoint's http(s) address[/]")
            return
        self.query_one("#gen-start", Button).disabled = True
        report.update("generating…")
        self.run_generate(url, self.query_one("#gen-model", Input).value.strip() or None, n,
                          self.query_one("#gen-topic", Input).value.strip() or None,
                          self.query_one("#gen-from-approved", Checkbox).value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="generate")
    def run_generate(self, url: str, model: str | None, n: int, topic: str | None, from_approved: bool) -> None:
        # Runs in a thread: it reports by message only, never touching a widget.
        def progress(r: gen.Report) -> None:
            self.post_message(GenerationProgressed(r.to_json(), n))

        try:
            r = gen.generate(self.app.store, self.app.config, url, n, model, topic=topic,
                             from_approved=from_approved, progress=progress)
        except (StoreError, ValueError) as e:
            self.post_message(GenerationFinished(None, str(e)))
        else:
            self.post_message(GenerationFinished(r.to_json(), r.errors[-1] if r.errors else None))

    def on_generation_progressed(self, message: GenerationProgressed) -> None:
        self.query_one("#gen-progress", ProgressBar).update(total=message.total, progress=message.report["added"])
        self.query_one("#gen-report", Static).update(self._line(message.report))

    def on_generation_finished(self, message: GenerationFinished) -> None:
        self.query_one("#gen-start", Button).disabled = False
        report = self.query_one("#gen-report", Static)
        if message.report is None:
            report.update(f"[red]{escape(message.error)}[/]")
            return
        self.result = message.report
        tail = f"\nlast error: {escape(message.error)}" if message.error else ""
        report.update(self._line(message.report) + " · done" + tail)

    @staticmethod
    def _line(r: dict) -> str:
        return (f"added {r['added']} · duplicates {r['duplicates']} · failed {r['failed']} · "
                f"tokens {r['prompt_tokens'] + r['completion_tokens']:,}")
