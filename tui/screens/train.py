"""Train mode: a spec form, Start / Stop / Resume, a live loss chart, progress with ETA and tokens/s, the log
tail and the run history. Training runs in its own process; this screen only reads its events file, on a
timer, so the chart redraws at most four times a second however fast events arrive."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError
from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, ProgressBar, RichLog, Select, Static

from forge.errors import format_validation_error
from forge.store import StoreError
from forge.train import runs
from forge.train.events import as_float, read_events
from forge.train.spec import TrainSpec
from forge.train.recipes import RECIPES, recipe_spec
from tui.messages import LengthsMeasured, RunStarted, RunStartFailed
from tui.screens.worker_errors import ReportsWorkerErrors
from tui.widgets.loss_chart import LossChart

FORM = [  # (spec field, label)
    ("base_model", "base model"), ("max_steps", "max steps (empty: epochs)"), ("epochs", "epochs"),
    ("learning_rate", "learning rate"), ("lora_r", "LoRA r"), ("lora_alpha", "LoRA alpha"),
    ("batch_size", "batch size"), ("grad_accum", "grad accumulation"), ("num_processes", "processes"),
    ("max_seq_len", "max seq len"), ("eval_steps", "eval every"), ("save_steps", "save every"),
]
BATCH_FIELDS = ("batch_size", "grad_accum", "num_processes")


def batch_text(batch_size, grad_accum, num_processes, short: bool = False) -> str:
    """"effective batch 16 = 4 rows × 2 accumulated × 2 processes" (short: "2 processes · effective batch 16
    (4×2×2)"), or a dash for a value that is not a number."""
    try:
        b, g, p = int(batch_size), int(grad_accum), int(num_processes or 1)
    except (TypeError, ValueError):
        return "effective batch —"
    processes = f"{p} process{'es' if p != 1 else ''}"
    if short:
        return f"{processes} · effective batch {b * g * p} ({b}×{g}×{p})"
    return f"effective batch {b * g * p} = {b} rows × {g} accumulated × {processes}"

REDRAW_SECONDS = 0.25


class TrainScreen(ReportsWorkerErrors, Screen):
    # priority: a focused form field must not take them (an Input binds ctrl+x to "cut")
    BINDINGS = [Binding("ctrl+t", "start", "Start", priority=True), Binding("ctrl+x", "stop", "Stop", priority=True),
                Binding("ctrl+r", "resume", "Resume", priority=True)]
    WORKER_UI = {"train-start": ("starting the run", "#spec-error", ("#train-start",))}

    def __init__(self) -> None:
        super().__init__()
        self.proc = None
        self.run_id: str | None = None
        self.run_dir: Path | None = None
        self.events_offset = 0
        self.train_points: list[tuple[int, float]] = []
        self.eval_points: list[tuple[int, float]] = []
        self.dirty = False
        self.max_steps = 0
        self.run_batch = ""  # the followed run's processes and effective batch (from its stored spec)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="train-main"):
            with VerticalScroll(id="train-form"):
                defaults = TrainSpec(**self.app.train_defaults)
                for name, label in FORM:
                    yield Label(label, classes="form-label")
                    value = getattr(defaults, name)
                    yield Input("" if value is None else str(value), id=f"spec-{name}", classes="form-input")
                yield Static(self.form_batch_text(defaults), id="spec-batch", markup=False)
                yield Label("recipe", classes="form-label")
                yield Select([(name, name) for name in RECIPES], value=defaults.recipe or Select.NULL,
                             prompt="none", id="spec-recipe")
                yield Label("backend", classes="form-label")
                yield Select([("auto", "auto"), ("peft", "peft"), ("unsloth", "unsloth")], value=defaults.backend,
                             allow_blank=False, id="spec-backend")
                yield Static("", id="spec-error")
                with Horizontal(id="train-buttons"):
                    yield Button("Start", variant="success", id="train-start")
                    yield Button("Stop", variant="error", id="train-stop", disabled=True)
                    yield Button("Resume", id="train-resume")
            with Vertical(id="train-live"):
                yield Label("no run yet: set the spec and press Start (ctrl+t)", id="train-stats")
                yield ProgressBar(id="train-progress", show_eta=False)
                yield Static("", id="train-lengths", markup=False)
                yield LossChart(id="loss-chart")
                yield RichLog(id="train-log", max_lines=500, wrap=True, markup=True)
                yield DataTable(id="run-history", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "train"
        table = self.query_one("#run-history", DataTable)
        table.add_columns("run", "status", "step", "loss")
        runs.settle(self.app.store)  # a run whose runner died while no one watched shows as failed, with why
        self.refresh_history()
        self.set_interval(REDRAW_SECONDS, self.poll)

    # ---- spec -------------------------------------------------------------------------------------------
    @staticmethod
    def form_batch_text(spec) -> str:
        return batch_text(*(getattr(spec, name) for name in BATCH_FIELDS))

    @on(Input.Changed, "#spec-batch_size, #spec-grad_accum, #spec-num_processes")
    def batch_changed(self, event: Input.Changed) -> None:
        values = (self.query_one(f"#spec-{name}", Input).value.strip() for name in BATCH_FIELDS)
        self.query_one("#spec-batch", Static).update(batch_text(*values))

    def read_spec(self) -> TrainSpec | None:
        data = dict(self.app.train_defaults)
        for name, _ in FORM:
            raw = self.query_one(f"#spec-{name}", Input).value.strip()
            data[name] = raw if raw else None
        if data.get("epochs") is None:
            data.pop("epochs")
        data["backend"] = self.query_one("#spec-backend", Select).value
        recipe = self.query_one("#spec-recipe", Select).value
        if recipe != Select.NULL:  # what the form does not show (truncation, eval budget) comes from the recipe
            data = {**recipe_spec(recipe), **{k: v for k, v in data.items() if v is not None}}
        error = self.query_one("#spec-error", Static)
        try:
            spec = TrainSpec.model_validate(data)
        except ValidationError as e:
            error.update(f"[red]{escape(format_validation_error(e))}[/]")
            return None
        error.update("")
        return spec

    # ---- run control ------------------------------------------------------------------------------------
    def action_start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.notify("a run is already going; stop it first", severity="warning")
            return
        spec = self.read_spec()
        if spec is not None:
            self.query_one("#train-lengths", Static).update("measuring the training examples' lengths…")
            self.start_run(spec)

    def on_screen_resume(self) -> None:
        offered = self.app.offered_recipe
        if offered and (self.proc is None or self.proc.poll() is not None):  # not while a run is going: later
            self.app.offered_recipe = None
            self.query_one("#spec-recipe", Select).value = offered  # its fields fill the form (recipe_chosen)

    @on(Select.Changed, "#spec-recipe")
    def recipe_chosen(self, event: Select.Changed) -> None:
        if event.value == Select.NULL:
            return
        for name, value in recipe_spec(event.value).items():
            if any(name == field for field, _ in FORM):
                self.query_one(f"#spec-{name}", Input).value = str(value)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-start")
    def start_run(self, spec: TrainSpec) -> None:
        try:
            run_id, run_dir = runs.create_run(self.app.store, self.app.config, spec,
                                              check_lengths=self.confirm_lengths)
        except runs.TruncationRefused as e:
            self.post_message(RunStartFailed(f"not started: {e}"))
            return
        except (StoreError, OSError) as e:
            self.post_message(RunStartFailed(str(e)))  # a thread reports by message; the screen shows it
            return
        self.post_message(RunStarted(run_id, run_dir, self.app.train_launcher(run_dir, False)))

    def confirm_lengths(self, report: dict) -> bool:
        """In the start worker: show the length report; when an explicit max_seq_len truncates more than 2 %,
        ask (the dialog runs on the UI thread while this thread waits for the answer)."""
        import threading

        from textual.worker import get_current_worker

        from tui.screens.truncation_confirm import TruncationConfirm

        self.post_message(LengthsMeasured(report))
        if not report["needs_confirm"]:
            return True
        answer: list[bool] = []
        answered = threading.Event()

        def reply(ok: bool | None) -> None:
            answer.append(bool(ok))
            answered.set()

        self.app.call_from_thread(self.app.push_screen, TruncationConfirm(report), reply)
        worker = get_current_worker()
        while not answered.wait(0.1):
            if worker.is_cancelled:
                return False
        return answer[0]

    def on_lengths_measured(self, message: LengthsMeasured) -> None:
        from forge.train.lengths import summary_lines

        self.query_one("#train-lengths", Static).update("\n".join(summary_lines(message.report, bar_width=20)))

    def on_run_started(self, message: RunStarted) -> None:
        self.follow(message.run_id, message.run_dir, message.proc)

    def on_run_start_failed(self, message: RunStartFailed) -> None:
        self.query_one("#spec-error", Static).update(f"[red]{escape(message.error)}[/]")

    def follow(self, run_id: str, run_dir: Path, proc, resume: bool = False) -> None:
        self.run_id, self.run_dir, self.proc = run_id, run_dir, proc
        try:  # the stored spec: measuring lengths may have put fewer rows in a step and accumulated more
            spec = self.app.store.get_run(run_id)["spec"]
            self.run_batch = batch_text(*(spec.get(name, 1) for name in BATCH_FIELDS), short=True)
        except StoreError:
            self.run_batch = ""
        self.query_one("#train-stats", Label).update(f"{run_id}  {self.run_batch}")
        if not resume:  # a resumed run appends to the same events file: keep reading where we were
            self.train_points, self.eval_points, self.events_offset = [], [], 0
        self.query_one("#train-log", RichLog).write(f"[b]{'resumed' if resume else 'started'} {run_id}[/]")
        self.query_one("#train-stop", Button).disabled = False
        self.refresh_history()
        self.show_run_status("starting")  # launched: no longer "created" (or "stopped", when resumed)

    def show_run_status(self, status: str) -> None:
        """The followed run's row says what its runner says while it runs; the store has it once the run ends."""
        table = self.query_one("#run-history", DataTable)
        if self.run_id in table.rows:
            table.update_cell_at(Coordinate(table.get_row_index(self.run_id), 1), status)

    def action_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            runs.stop(self.proc)
            self.query_one("#train-log", RichLog).write("stop requested: saving a checkpoint…")

    def action_resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.notify("the run is still going", severity="warning")
            return
        table = self.query_one("#run-history", DataTable)
        run_id = self.run_id
        if table.row_count and table.cursor_row is not None:
            run_id = str(table.get_row_at(table.cursor_row)[0])
        if not run_id:
            self.notify("no run to resume", severity="warning")
            return
        try:
            run_dir = runs.run_dir_of(self.app.store, run_id)
        except StoreError as e:
            self.notify(str(e), severity="error")
            return
        if run_id != self.run_id:
            self.train_points, self.eval_points, self.events_offset = [], [], 0
        self.follow(run_id, run_dir, self.app.train_launcher(run_dir, True), resume=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        {"train-start": self.action_start, "train-stop": self.action_stop,
         "train-resume": self.action_resume}[event.button.id]()

    # ---- live view --------------------------------------------------------------------------------------
    def poll(self) -> None:
        if self.run_dir is None:
            return
        events, self.events_offset = read_events(self.run_dir, self.events_offset)
        log = self.query_one("#train-log", RichLog)
        last = None
        for e in events:
            kind = e["event"]
            if kind == "log" and as_float(e.get("loss")) is not None:
                self.train_points.append((e["step"], as_float(e["loss"])))
                self.max_steps = e.get("max_steps") or self.max_steps
                last = e
            elif kind == "eval":
                self.eval_points.append((e["step"], as_float(e["eval_loss"])))
                log.write(f"step {e['step']}: eval loss {as_float(e['eval_loss']):.4f}")
            elif kind == "status":
                self.show_run_status(e["status"])
                log.write(f"[b]{e['status']}[/]" + (f": {e['message']}" if e.get("message") else ""))
                self.max_steps = e.get("max_steps") or self.max_steps
            elif kind in ("info", "warning", "checkpoint"):
                log.write(f"{kind}: {e.get('message') or e.get('path')}")
        if events:
            self.dirty = True
        if last is not None:
            eta = as_float(last.get("eta_s"))
            self.query_one("#train-stats", Label).update(
                f"{self.run_id}  step {last['step']}/{self.max_steps}  loss {as_float(last['loss']):.4f}  "
                f"{last.get('tokens_per_s', 0):.0f} tok/s" + (f"  ETA {eta:.0f} s" if eta else "")
                + (f"  ·  {self.run_batch}" if self.run_batch else ""))
            self.query_one("#train-progress", ProgressBar).update(total=self.max_steps or None,
                                                                  progress=last["step"])
        if self.dirty:
            self.query_one(LossChart).set_points(self.train_points, self.eval_points)
            self.dirty = False
        if self.proc is not None and self.proc.poll() is not None:
            self.query_one("#train-stop", Button).disabled = True
            died = runs.run_status(self.run_dir).get("status") not in runs.FINAL
            final = runs.finalize(self.app.store, self.run_id, self.run_dir, self.proc.returncode)
            if died:
                log.write(f"[red]{escape(final.get('message') or 'the runner ended without a final status')}[/]")
            self.proc = None
            self.refresh_history()

    def refresh_history(self) -> None:
        table = self.query_one("#run-history", DataTable)
        table.clear()
        for r in self.app.store.runs()[:50]:
            loss = as_float(r["meta"].get("last_loss"))
            table.add_row(r["id"], r["status"], str(r["meta"].get("step") or ""),
                          f"{loss:.4f}" if loss is not None else "", key=r["id"])

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.notify(f"selected {event.row_key.value}: Resume (ctrl+r) continues it")
