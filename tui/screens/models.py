"""Models mode: the registry (quant, size, provenance, template parity) and Export of a finished run with
progress per stage. Swap-into-companion and Evaluate arrive with their issues; their buttons are here, disabled."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, ProgressBar, Select, Static

from forge import export as ex
from forge.store import StoreError

QUANTS = [("Q4_K_M (default)", "q4_k_m"), ("Q5_K_M", "q5_k_m"), ("Q8_0", "q8_0"), ("F16", "f16")]


class ModelsScreen(Screen):
    BINDINGS = [Binding("ctrl+e", "export", "Export selected run")]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="models-main"):
            yield Label("Registered models", classes="section-title")
            yield DataTable(id="model-table", cursor_type="row")
            yield Static("", id="model-detail")
            with Horizontal(id="model-buttons"):
                yield Button("Swap into companion", id="model-swap", disabled=True)
                yield Button("Evaluate", id="model-eval", disabled=True)
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
