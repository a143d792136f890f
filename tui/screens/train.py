"""Train mode: a spec form, Start / Stop / Resume, a live loss chart, progress with ETA and tokens/s, the log
tail and the run history. Training runs in its own process; this screen only reads its events file, on a
timer, so the chart redraws at most four times a second however fast events arrive.

The form picks the base model (the registry's bases, forge.models.bases; a base set elsewhere, e.g. a folder path,
is added as an option), the method (sft, or preference training: dpo on pairs, kto on good/bad labels) and,
optionally, a finished run whose adapter the new run starts from. Under it a line says how many preference pairs
and KTO labels the store holds, by source: counted in a worker (it reads the whole store) each time the screen is
shown."""

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

from forge.data import preferences
from forge.errors import ForgeError, format_validation_error
from forge.store import StoreError
from forge.train import runs
from forge.train.checkpoints import MARKER
from forge.train.events import as_float, read_events
from forge.train.spec import TrainSpec
from forge.train.recipes import RECIPES, recipe_spec
from tui.messages import LengthsMeasured, PreferencesCounted, RunStarted, RunStartFailed
from tui.screens.worker_errors import ReportsWorkerErrors
from tui.widgets.loss_chart import LossChart

FORM = [  # (spec field, label): the form's text fields (the base model is a select above them: base_options)
    ("max_steps", "max steps (empty: epochs)"), ("epochs", "epochs"),
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
METHODS = [("sft: supervised", "sft"), ("dpo: preference pairs", "dpo"), ("kto: good / bad labels", "kto"),
           ("orpo: pairs, no reference", "orpo")]
REWARD_KEYS = ("rewards_margin", "rewards_chosen", "rewards_rejected")  # charted, in this order, for DPO/KTO runs
NO_PAIRS = ("no preference pairs yet: edit machine-written answers in Curate, vote in Eval, or import a preference "
            "dataset")
NO_LABELS = "no KTO labels yet: approve or reject examples in Curate, or import a labelled preference dataset"


def base_label(base) -> str:
    """"gemma3-270m · gemma3 · 270M": a registered base (forge.models.bases.Base) as the base select shows it."""
    return f"{base.id} · {base.architecture} · {base.size}"


def base_options(config, current: str | None = None) -> tuple[list[tuple[str, str]], str | None]:
    """The base select's options, (label, base id), and a problem to show (None when there is none): the bases of
    the registry (forge.models.bases.list_bases: the bundled SmolLM2, Gemma 3 270M when installed, the workspace's
    own, config.json's `bases` copied in first as the CLI does), then `current` when it is not one of them (a folder
    path or hub id from config.json / train_defaults, a run's base) so the spec it came from can still be shown and
    started as it is."""
    from forge.models import bases

    problem = None
    try:
        bases.sync_config(config)  # the runner finds a base in the workspace registry only
        listed = bases.list_bases(config.workspace_path())
    except ForgeError as e:  # a broken bases.json: the built-in bases are still offered, and why the rest are not
        listed = [bases.SMOLLM2] + ([bases.GEMMA3] if bases.gemma_available() else [])
        problem = str(e)
    options = [(base_label(b), b.id) for b in listed]
    if current and all(value != current for _, value in options):
        options.append((f"{current} · not registered", current))
    return options, problem


def adapter_runs(all_runs: list[dict]) -> list[dict]:
    """The runs a new run can start from: ended (completed or stopped) with a complete final adapter, in the order
    given (store.runs(): newest first)."""
    return [r for r in all_runs if r["status"] in ("completed", "stopped")
            and (Path(r["run_dir"]) / "adapter" / MARKER).is_file()]


def start_refusal(method: str, counts: dict) -> str | None:
    """Why a `method` run cannot start with these preference counts (forge.data.preferences.counts), or None."""
    if method in ("dpo", "orpo") and not counts.get("pairs_total"):
        return NO_PAIRS
    if method == "kto" and not sum((counts.get("labels") or {}).values()):
        return NO_LABELS
    return None


class TrainScreen(ReportsWorkerErrors, Screen):
    # priority: a focused form field must not take them (an Input binds ctrl+x to "cut")
    BINDINGS = [Binding("ctrl+t", "start", "Start", priority=True), Binding("ctrl+x", "stop", "Stop", priority=True),
                Binding("ctrl+r", "resume", "Resume", priority=True)]
    WORKER_UI = {"train-start": ("starting the run", "#spec-error", ("#train-start",)),
                 "train-prefs": ("counting preference pairs", "#train-prefs", ())}

    def __init__(self) -> None:
        super().__init__()
        self.proc = None
        self.run_id: str | None = None
        self.run_dir: Path | None = None
        self.events_offset = 0
        self.chosen_base: str | None = None  # the base select's last value, to tell a real change of base
        self.train_points: list[tuple[int, float]] = []
        self.eval_points: list[tuple[int, float]] = []
        # a DPO/KTO run's rewards (REWARD_KEYS → points), and its latest margin and accuracy for the stats line
        self.reward_points: dict[str, list[tuple[int, float]]] = {k: [] for k in REWARD_KEYS}
        self.last_margin: float | None = None
        self.last_accuracy: float | None = None
        self.pref_counts: dict | None = None
        self.from_run_options: list[tuple[str, str]] = []
        self.base_choices: list[tuple[str, str]] = []  # the base select's options (base_options)
        self.lengths_pending = False  # Start said "measuring…" and no length report has come yet
        self.dirty = False
        self.max_steps = 0
        self.run_batch = ""  # the followed run's processes and effective batch (from its stored spec)

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="train-main"):
            with VerticalScroll(id="train-form"):
                defaults = TrainSpec(**self.app.train_defaults)
                yield Label("base model", classes="form-label")
                options, _ = base_options(self.app.config, defaults.base_model)
                self.base_choices = options
                yield Select(options, value=defaults.base_model, allow_blank=False, id="spec-base_model")
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
                yield Label("method", classes="form-label")
                yield Select(METHODS, value=defaults.method, allow_blank=False, id="spec-method")
                yield Label("β (dpo / kto)", classes="form-label")
                yield Input(str(defaults.beta), id="spec-beta", classes="form-input",
                            disabled=defaults.method == "sft")
                yield Label("start from run", classes="form-label")
                yield Select([], prompt="a fresh adapter", id="spec-from-run")
                yield Static("", id="spec-error")
                with Horizontal(id="train-buttons"):
                    yield Button("Start", variant="success", id="train-start")
                    yield Button("Stop", variant="error", id="train-stop", disabled=True)
                    yield Button("Resume", id="train-resume")
                yield Static("counting preference pairs…", id="train-prefs", markup=False)
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
        table.add_columns("run", "status", "method", "base", "step", "loss")
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
        data["base_model"] = self.query_one("#spec-base_model", Select).value
        for name, _ in FORM:
            raw = self.query_one(f"#spec-{name}", Input).value.strip()
            data[name] = raw if raw else None
        if data.get("epochs") is None:
            data.pop("epochs")
        data["backend"] = self.query_one("#spec-backend", Select).value
        data["method"] = self.query_one("#spec-method", Select).value
        from_run = self.query_one("#spec-from-run", Select).value
        data["from_run"] = None if from_run == Select.NULL else from_run
        beta = self.query_one("#spec-beta", Input).value.strip()
        if beta:
            data["beta"] = beta
        recipe = self.query_one("#spec-recipe", Select).value
        if recipe != Select.NULL:  # what the form does not show (truncation, eval budget) comes from the recipe
            data = {**recipe_spec(recipe, data.get("base_model")), **{k: v for k, v in data.items() if v is not None}}
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
            self.query_one("#train-lengths", Static).update(  # a preference run's lengths are the runner's to fit
                "measuring the training examples' lengths…" if spec.method == "sft"
                else f"exporting the {spec.method} preference data…")
            self.lengths_pending = True
            self.start_run(spec)

    def on_screen_resume(self) -> None:
        self.count_preferences()  # Curate and Eval may have added pairs or labels since the screen was last shown
        self.refresh_from_runs()
        self.refresh_bases()
        offered = self.app.offered_recipe
        if offered and (self.proc is None or self.proc.poll() is not None):  # not while a run is going: later
            self.app.offered_recipe = None
            self.query_one("#spec-recipe", Select).value = offered  # its fields fill the form (recipe_chosen)

    @on(Select.Changed, "#spec-recipe")
    def recipe_chosen(self, event: Select.Changed) -> None:
        if event.value == Select.NULL:
            return
        self.fill_from_recipe(str(event.value))

    def fill_from_recipe(self, recipe: str, only: set[str] | None = None) -> None:
        """The form's fields (or only those named) from `recipe`'s defaults for the chosen base (a recipe may
        differ per base)."""
        base = self.query_one("#spec-base_model", Select).value
        for name, value in recipe_spec(recipe, base if isinstance(base, str) else None).items():
            if (only is None or name in only) and any(name == field for field, _ in FORM):
                self.query_one(f"#spec-{name}", Input).value = str(value)

    @on(Select.Changed, "#spec-base_model")
    def base_chosen(self, event: Select.Changed) -> None:
        """A real change of base with a recipe picked: the fields that recipe sets per base follow the new base
        (options refreshed or set back to the same base change nothing)."""
        base = event.value if isinstance(event.value, str) else None
        before, self.chosen_base = self.chosen_base, base
        recipe = self.query_one("#spec-recipe", Select).value
        if base is None or before is None or base == before or not isinstance(recipe, str):
            return
        per_base = RECIPES[recipe].per_base
        self.fill_from_recipe(recipe, set(per_base.get(before, {})) | set(per_base.get(base, {})))

    @on(Select.Changed, "#spec-method")
    def method_chosen(self, event: Select.Changed) -> None:
        self.query_one("#spec-beta", Input).disabled = event.value == "sft"

    @on(Select.Changed, "#spec-from-run")
    def from_run_chosen(self, event: Select.Changed) -> None:
        """An adapter only fits the base it was trained on: the form takes that run's base model."""
        if event.value == Select.NULL:
            return
        try:
            base = self.app.store.get_run(event.value)["spec"].get("base_model")
        except StoreError:
            return
        if base:
            self.set_base(str(base))

    def set_base(self, base_id: str) -> None:
        """Select base `base_id`, adding it as an option first when the registry does not list it (a path)."""
        select = self.query_one("#spec-base_model", Select)
        if all(value != base_id for _, value in self.base_choices):
            self.base_choices = self.base_choices + [(f"{base_id} · not registered", base_id)]
            select.set_options(self.base_choices)
        select.value = base_id

    def refresh_bases(self) -> None:
        """The base select's options again (`forge models add-base` may have added one since); the choice is kept."""
        select = self.query_one("#spec-base_model", Select)
        chosen = select.value
        options, problem = base_options(self.app.config, chosen)
        if problem:
            self.query_one("#spec-error", Static).update(f"[red]{escape(problem)}[/]")
        if options == self.base_choices:
            return
        self.base_choices = options
        select.set_options(options)
        select.value = chosen

    def refresh_from_runs(self, all_runs: list[dict] | None = None) -> None:
        """The "start from run" choices: finished runs with an adapter, newest first; the choice is kept while its
        run is still listed."""
        finished = adapter_runs(self.app.store.runs() if all_runs is None else all_runs)
        # "20250101-101010-ab12 · sft": the id without its constant "run-" fits the form's width on one line
        options = [(f"{r['id'].removeprefix('run-')} · {r['spec'].get('method', 'sft')}", r["id"]) for r in finished]
        if options == self.from_run_options:
            return
        self.from_run_options = options
        select = self.query_one("#spec-from-run", Select)
        chosen = select.value
        select.set_options(options)
        if chosen != Select.NULL and any(value == chosen for _, value in options):
            select.value = chosen

    # ---- preference data --------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="train-prefs")
    def count_preferences(self) -> None:
        self.post_message(PreferencesCounted(preferences.counts(self.app.store)))

    def on_preferences_counted(self, message: PreferencesCounted) -> None:
        self.pref_counts = message.counts
        self.query_one("#train-prefs", Static).update(preferences.describe(message.counts))

    @work(thread=True, exclusive=True, exit_on_error=False, group="train-start")
    def start_run(self, spec: TrainSpec) -> None:
        if spec.method != "sft":  # counted now, not taken from the line under the form: the store may have changed
            counts = preferences.counts(self.app.store)
            self.post_message(PreferencesCounted(counts))
            refusal = start_refusal(spec.method, counts)
            if refusal:
                self.post_message(RunStartFailed(refusal))
                return
        try:
            run_id, run_dir = runs.create_run(self.app.store, self.app.config, spec,
                                              check_lengths=self.confirm_lengths)
        except runs.TruncationRefused as e:
            self.post_message(RunStartFailed(f"not started: {e}"))
            return
        except (ForgeError, OSError) as e:  # StoreError, DatasetError, SpecError (from_run has no adapter): one line
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

        self.lengths_pending = False
        self.query_one("#train-lengths", Static).update("\n".join(summary_lines(message.report, bar_width=20)))

    def on_run_started(self, message: RunStarted) -> None:
        self.clear_pending_lengths()
        self.follow(message.run_id, message.run_dir, message.proc)

    def clear_pending_lengths(self) -> None:
        """Started or refused with no length report (a preference run, a refusal before measuring): the
        "measuring…" line would otherwise stay."""
        if self.lengths_pending:
            self.lengths_pending = False
            self.query_one("#train-lengths", Static).update("")

    def worker_failed(self, worker, error: BaseException) -> None:
        if worker.group == "train-start":
            self.clear_pending_lengths()

    def on_run_start_failed(self, message: RunStartFailed) -> None:
        self.clear_pending_lengths()
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
            self.clear_points()
        self.query_one("#train-log", RichLog).write(f"[b]{'resumed' if resume else 'started'} {run_id}[/]")
        self.query_one("#train-stop", Button).disabled = False
        self.refresh_history()
        self.show_run_status("starting")  # launched: no longer "created" (or "stopped", when resumed)

    def clear_points(self) -> None:
        self.train_points, self.eval_points, self.events_offset = [], [], 0
        self.reward_points = {k: [] for k in REWARD_KEYS}
        self.last_margin = self.last_accuracy = None
        self.dirty = True  # the chart forgets the previous run's lines too

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
            self.clear_points()
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
                for key in REWARD_KEYS:  # DPO/KTO runs only; an SFT run's events have none
                    if as_float(e.get(key)) is not None:
                        self.reward_points[key].append((e["step"], as_float(e[key])))
                if as_float(e.get("rewards_margin")) is not None:
                    self.last_margin = as_float(e["rewards_margin"])
                if as_float(e.get("rewards_accuracy")) is not None:
                    self.last_accuracy = as_float(e["rewards_accuracy"])
            elif kind == "eval":
                self.eval_points.append((e["step"], as_float(e["eval_loss"])))
                margin = as_float(e.get("eval_rewards_margin"))
                log.write(f"step {e['step']}: eval loss {as_float(e['eval_loss']):.4f}"
                          + (f" · reward margin {margin:.3f}" if margin is not None else ""))
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
                + (f"{last['tokens_per_s']:.0f} tok/s" if last.get("tokens_per_s") is not None else "")
                + (f"  ETA {eta:.0f} s" if eta else "")
                + self.rewards_text() + (f"  ·  {self.run_batch}" if self.run_batch else ""))
            self.query_one("#train-progress", ProgressBar).update(total=self.max_steps or None,
                                                                  progress=last["step"])
        if self.dirty:
            self.query_one(LossChart).set_points(self.train_points, self.eval_points, self.reward_points)
            self.dirty = False
        if self.proc is not None and self.proc.poll() is not None:
            self.query_one("#train-stop", Button).disabled = True
            died = runs.run_status(self.run_dir).get("status") not in runs.FINAL
            final = runs.finalize(self.app.store, self.run_id, self.run_dir, self.proc.returncode)
            if died:
                log.write(f"[red]{escape(final.get('message') or 'the runner ended without a final status')}[/]")
            self.proc = None
            self.refresh_history()

    def rewards_text(self) -> str:
        """"  margin 0.412  acc 75%" for a preference run (accuracy: how often chosen out-scores rejected);
        nothing for SFT."""
        text = f"  margin {self.last_margin:.3f}" if self.last_margin is not None else ""
        return text + (f"  acc {self.last_accuracy:.0%}" if self.last_accuracy is not None else "")

    def refresh_history(self) -> None:
        table = self.query_one("#run-history", DataTable)
        table.clear()
        all_runs = self.app.store.runs()
        self.refresh_from_runs(all_runs)  # a run that just ended may now be one to start from
        for r in all_runs[:50]:
            loss = as_float(r["meta"].get("last_loss"))
            kind = runs.run_kind(r["spec"])
            method = kind["method"] + (f" ← {kind['from_run']}" if kind["from_run"] else "")
            table.add_row(r["id"], r["status"], method, kind["base"][:24], str(r["meta"].get("step") or ""),
                          f"{loss:.4f}" if loss is not None else "", key=r["id"])

    @on(DataTable.RowSelected)
    def row_selected(self, event: DataTable.RowSelected) -> None:
        self.notify(f"selected {event.row_key.value}: Resume (ctrl+r) continues it")
