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

from forge import export as ex
from forge.store import StoreError
from tui.messages import ModelSwapped

QUANTS = [("Q4_K_M (default)", "q4_k_m"), ("Q5_K_M", "q5_k_m"), ("Q8_0", "q8_0"), ("F16", "f16")]


class ModelsScreen(Screen):
    BINDINGS = [Binding("ctrl+e", "export", "Export selected run"),
                Binding("ctrl+w", "swap", "Swap companion to model"),
                Binding("ctrl+v", "evaluate", "Evaluate model")]

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
                yield Select(QUANTS, value="q4_k_m", allow_blank=False, id="export-quant")
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
        try:
            ex.register_bundled_base(self.app.store, self.app.config)
        except Exception as e:  # the bundled model missing must not hide the rest
            self.query_one("#model-detail", Static).update(f"[yellow]bundled base not registered: {e}[/]")
        table = self.query_one("#model-table", DataTable)
        table.clear()
        for m in self.app.store.models():
            parity = m["meta"].get("template_parity")
            table.add_row(m["id"], (m["quant"] or "").upper(), f"{(m['bytes'] or 0) / 1e6:.1f} MB",
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
        lines = [f"[b]{m['name']}[/]  {m['path']}", f"sha256 {m['sha256'][:16]}…"]
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
        self.query_one("#export-progress", ProgressBar).update(progress=0)
        self.run_export(run_id, quant)

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
        return str(table.get_row_at(table.cursor_row)[0])

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

        companion = self.app.companion
        status = self.query_one("#swap-status", Static)
        say = lambda text: self.app.call_from_thread(status.update, text)  # noqa: E731
        try:
            if companion.health() is None:
                say(f"no companion running: starting one with {model} on {companion.url} …")
                companion.start(model)
                h = companion.wait_healthy(self.app.config.companion.load_timeout_s)
                if not h:
                    say(f"[red]the companion did not start: {companion.exit_reason() or 'timed out'}[/]")
                    return
                say(f"companion started, serving [b]{h['model']}[/] on {companion.url}/v1")
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
                say(f"[red]{escape(result['error'])}[/] — the previous model keeps serving")
            else:
                r = result["ok"]
                say(f"companion now serves [b]{r['model']}[/] (was {r['previous']}): loaded in "
                    f"{r['load_ms'] / 1000:.1f} s, swapped in {r['swap_ms'] / 1000:.1f} s; smoke test {r['smoke']!r}")
                self.app.call_from_thread(self.app.post_message, ModelSwapped(r))
        finally:
            self.app.call_from_thread(setattr, self.query_one("#model-swap", Button), "disabled", False)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def run_export(self, run_id: str, quant: str) -> None:
        status = self.query_one("#export-status", Static)
        bar = self.query_one("#export-progress", ProgressBar)

        def progress(stage: str, message: str) -> None:
            self.app.call_from_thread(bar.update, progress=ex.STAGES.index(stage))
            self.app.call_from_thread(status.update, f"[{stage}] {message}")

        try:
            r = ex.export_run(self.app.store, self.app.config, run_id, quant, progress)
        except StoreError as e:
            self.app.call_from_thread(status.update, f"[red]{e}[/]")
        else:
            self.app.call_from_thread(bar.update, progress=len(ex.STAGES))
            self.app.call_from_thread(status.update, f"exported {r['model_id']} ({r['bytes'] / 1e6:.1f} MB)")
            self.app.call_from_thread(self.refresh_tables)
        finally:
            self.app.call_from_thread(setattr, self.query_one("#export-run", Button), "disabled", False)
