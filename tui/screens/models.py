"""Models mode: the registry (quant, size, provenance, template parity), Export of a finished run with progress
per stage, "swap into companion" (starts the companion with the model when none runs) with the swap's progress,
and Evaluate (opens Eval mode on the model)."""

from __future__ import annotations

import time

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, ProgressBar, Select, Static

from forge.models import export as ex
from forge.store import StoreError
from tui.messages import ExportFinished, ExportProgressed, ModelSwapped, SwapProgressed
from tui.screens.bundled_base import REGISTERING_TEXT, RegistersBundledBase
from tui.screens.worker_errors import ReportsWorkerErrors

QUANTS = [("Auto (the base's)", "auto"), ("Q4_K_M", "q4_k_m"),
          ("Q5_K_M", "q5_k_m"), ("Q8_0", "q8_0"), ("F16", "f16"), ("LoRA adapter only", "adapter")]


class ModelsScreen(ReportsWorkerErrors, RegistersBundledBase, Screen):
    # priority: whatever has focus (the quant picker, a table), these keys reach the screen
    BINDINGS = [Binding("ctrl+e", "export", "Export selected run", priority=True),
                Binding("ctrl+w", "swap", "Swap companion to model", priority=True),
                Binding("ctrl+v", "evaluate", "Evaluate model", priority=True)]
    WORKER_UI = {"export": ("export", "#export-status", ("#export-run",)),
                 "swap": ("swap", "#swap-status", ("#model-swap",)),
                 "register-base": ("registering the bundled base", "#model-detail", ())}
    export_stages: list[str] = ex.STAGES

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="models-main"):
            yield Label("Registered models", classes="section-title")
            yield DataTable(id="model-table", cursor_type="row")
            yield Static("", id="model-detail")
            with Horizontal(id="model-buttons"):
                yield Button("Swap into companion", id="model-swap")
                yield Button("Evaluate", id="model-eval")
            yield Static("", id="swap-status")
            yield Label("Finished runs", classes="section-title")
            yield DataTable(id="export-runs", cursor_type="row")
            with Horizontal(id="export-bar"):
                yield Select(QUANTS, value="auto", allow_blank=False, id="export-quant")
                yield Button("Export", variant="primary", id="export-run")
            yield ProgressBar(id="export-progress", total=len(ex.STAGES), show_eta=False)
            yield Static("", id="export-status")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "models"
        self.query_one("#model-table", DataTable).add_columns("id", "quant", "size", "parity", "run", "created")
        self.query_one("#export-runs", DataTable).add_columns("run", "status", "step", "loss")
        self.refresh_tables()

    def on_screen_resume(self) -> None:
        self.refresh_tables()

    def refresh_tables(self) -> None:
        if not self.ensure_bundled_base() and self.registering_base:  # list what is there now, again once it is in
            self.query_one("#model-detail", Static).update(REGISTERING_TEXT)
        table = self.query_one("#model-table", DataTable)
        table.clear()
        for m in ex.models_with_adapters(self.app.store.models()):
            parity = m["meta"].get("template_parity")
            adapter = ex.is_adapter(m)  # listed under its base
            table.add_row(f"  └ {m['id']}" if adapter else m["id"],
                          f"LoRA of {m['meta'].get('base_id')}" if adapter else (m["quant"] or "").upper(),
                          f"{(m['bytes'] or 0) / 1e6:.1f} MB",
                          "—" if parity is None else ("ok" if parity else "FAILED"), m["run_id"] or "—",
                          m["created_at"][:19], key=m["id"])
        runs = self.query_one("#export-runs", DataTable)
        runs.clear()
        for r in self.app.store.runs():
            if r["status"] in ("completed", "stopped"):
                runs.add_row(r["id"], r["status"], str(r["meta"].get("step") or ""),
                             f"{float(r['meta']['last_loss']):.4f}" if r["meta"].get("last_loss") is not None else "",
                             key=r["id"])

    @on(DataTable.RowHighlighted, "#model-table")
    def model_highlighted(self, event: DataTable.RowHighlighted) -> None:
        m = self.app.store.get_model(event.row_key.value, missing_ok=True)
        if not m:
            return
        prov = m["meta"].get("provenance") or {}
        lines = [f"[b]{m['name']}[/]  {m['path']}", f"sha256 {(m['sha256'] or '?')[:16]}…"]
        if ex.is_adapter(m):
            lora = m["meta"].get("lora") or {}
            lines.append(f"LoRA adapter of {m['meta'].get('base_id')} (r={lora.get('rank', '?')}, "
                         f"alpha={lora.get('alpha', '?')}): serve the base, then add it to the companion")
        lines += [f"{k} = {v}" for k, v in prov.items()]
        if m["meta"].get("smoke"):
            lines.append(f"smoke test: {m['meta']['smoke']!r}")
        self.query_one("#model-detail", Static).update("\n".join(lines))

    def action_export(self) -> None:
        runs = self.query_one("#export-runs", DataTable)
        if not runs.row_count:
            self.notify("no finished run to export: train one in the Train mode (F4)", severity="warning")
            return
        run_id = str(runs.get_row_at(runs.cursor_row)[0])
        quant = str(self.query_one("#export-quant", Select).value)
        self.query_one("#export-run", Button).disabled = True
        self.export_stages = ex.ADAPTER_STAGES if quant == "adapter" else ex.STAGES
        self.query_one("#export-progress", ProgressBar).update(total=len(self.export_stages), progress=0)
        self.run_export(run_id, quant)

    def bundled_base_registered(self, error: str | None) -> None:
        # the bundled model missing must not hide the rest
        self.query_one("#model-detail", Static).update(
            "" if error is None else f"[yellow]bundled base not registered: {escape(error)}[/]")
        if error is None:
            self.refresh_tables()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-run":
            self.action_export()
        elif event.button.id == "model-swap":
            self.action_swap()
        elif event.button.id == "model-eval":
            self.action_evaluate()

    def selected_model(self) -> str | None:
        table = self.query_one("#model-table", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_evaluate(self) -> None:
        model = self.selected_model()
        if model:
            self.app.eval_preselect = model
            self.app.switch_mode("eval")

    def action_swap(self) -> None:
        model = self.selected_model()
        if not model:
            return
        self.query_one("#model-swap", Button).disabled = True
        self.swap_companion(model)

    @work(thread=True, exclusive=True, exit_on_error=False, group="swap")
    def swap_companion(self, model: str) -> None:
        """Swap the running companion to `model`, showing each stage as the server reports it; with no companion
        running, start one serving `model`."""
        import threading

        # Runs in a thread: it reports by message only, never touching a widget.
        companion = self.app.companion
        say = lambda text, done=False: self.post_message(SwapProgressed(text, done))  # noqa: E731
        if companion.health() is None:
            say(f"no companion running: starting one with {model} on {companion.url} …")
            companion.start(model)
            h = companion.wait_healthy(self.app.config.companion.load_timeout_s)
            if not h:
                say(f"[red]the companion did not start: {escape(companion.exit_reason() or 'timed out')}[/]", True)
                return
            say(f"companion started, serving [b]{h['model']}[/] on {companion.url}/v1", True)
            return
        result: dict = {}

        def call():
            from companion.client import SwapError

            try:
                result["ok"] = companion.swap(model)
            except SwapError as e:
                result["error"] = str(e)

        t = threading.Thread(target=call, daemon=True)
        t0 = time.monotonic()
        t.start()
        while t.is_alive():
            state = (companion.health() or {}).get("swap") or {}  # /health reports the swap's stage
            say(f"swapping to [b]{model}[/]: {state.get('stage', 'starting')} … "
                f"{time.monotonic() - t0:.1f} s (the old model keeps serving meanwhile)")
            t.join(0.3)
        if "error" in result:
            say(f"[red]{escape(result['error'])}[/] — the previous model keeps serving", True)
        else:
            r = result["ok"]
            say(f"companion now serves [b]{r['model']}[/] (was {r['previous']}): loaded in "
                f"{r['load_ms'] / 1000:.1f} s, swapped in {r['swap_ms'] / 1000:.1f} s; "
                f"smoke test {escape(repr(r['smoke']))}", True)
            self.app.post_message(ModelSwapped(r))

    def on_swap_progressed(self, message: SwapProgressed) -> None:
        self.query_one("#swap-status", Static).update(message.text)
        if message.done:
            self.query_one("#model-swap", Button).disabled = False

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def run_export(self, run_id: str, quant: str) -> None:
        # Runs in a thread: it reports by message only, never touching a widget.
        def progress(stage: str, message: str) -> None:
            self.post_message(ExportProgressed(stage, message))

        try:
            if quant == "adapter":
                r = ex.export_adapter(self.app.store, self.app.config, run_id, progress=progress)
            else:
                r = ex.export_run(self.app.store, self.app.config, run_id, quant, progress)
        except StoreError as e:
            self.post_message(ExportFinished(None, str(e)))
        else:
            self.post_message(ExportFinished(r))

    def on_export_progressed(self, message: ExportProgressed) -> None:
        if message.stage in self.export_stages:
            self.query_one("#export-progress", ProgressBar).update(progress=self.export_stages.index(message.stage))
        self.query_one("#export-status", Static).update(f"{escape(f'[{message.stage}]')} {escape(message.message)}")

    def on_export_finished(self, message: ExportFinished) -> None:
        self.query_one("#export-run", Button).disabled = False
        status = self.query_one("#export-status", Static)
        if message.result is None:
            status.update(f"[red]{escape(message.error)}[/]")
            return
        r = message.result
        self.query_one("#export-progress", ProgressBar).update(progress=len(self.export_stages))
        status.update(f"exported {r['model_id']} ({r['bytes'] / 1e6:.1f} MB)")
        self.refresh_tables()
