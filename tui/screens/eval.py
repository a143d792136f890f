"""Eval mode: a model against its baseline on held-out prompts. A summary table of metrics (tuned, base and, for
summary-like tasks, the lead-N extractive baseline, with tuned − each and its paired 95 % interval), the verdict in
words with the leakage and forgetting notes, then prompt by prompt the expected, baseline and tuned answers side by
side (words that differ from the expected one marked), keys to vote, the win rate, and a markdown + JSON report.

Either side may be a LoRA adapter (listed under its base, run as base + adapter, as the companion serves it): two of
{adapters, base} are compared at a time. Outputs are stored per system and held-out prompts, so after running A vs
base and B vs base on one file, picking A vs B shows their comparison without generating again. When the model came
from a training run, the held-out prompts may be that run's own held-out notes (`forge eval --run`), no file needed."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.text import Text
from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, ProgressBar, Select, Static

from forge import eval as ev
from forge.config import REPO_ROOT
from forge.models.export import is_adapter, models_with_adapters
from forge.store import StoreError
from tui.messages import EvalFinished, EvalProgressed
from tui.screens.bundled_base import REGISTERING_TEXT, RegistersBundledBase
from tui.screens.worker_errors import ReportsWorkerErrors
from tui.widgets.cluster_members import diff_text

METRICS = ["exact_match", "rouge_l", "rouge_lsum", "bleu", "json_valid", "json_field_accuracy", "latency_p50_ms",
           "latency_p95_ms", "tokens_per_s", "errors"]
VOTE_LABEL = {"model": "tuned", "baseline": "base", "tie": "tie"}


class EvalScreen(ReportsWorkerErrors, RegistersBundledBase, Screen):
    BINDINGS = [
        Binding("ctrl+g", "run", "Run eval", priority=True),  # works with the file field focused too
        Binding("j", "step(1)", "Next"), Binding("k", "step(-1)", "Prev"),
        Binding("t", "vote('model')", "Vote tuned"), Binding("b", "vote('baseline')", "Vote base"),
        Binding("equals_sign", "vote('tie')", "Tie"),
        Binding("x", "report", "Report"),
    ]
    WORKER_UI = {"eval": ("eval", "#eval-status", ("#eval-run",)), "eval-compare": ("comparison", "#eval-status", ()),
                 "register-base": ("registering the bundled base", "#eval-status", ())}

    def __init__(self) -> None:
        super().__init__()
        self.pair: tuple[dict, dict] | None = None
        self.compared: dict | None = None  # ev.comparison() of the pair, computed in a worker
        self.index = 0
        self.adapter_of: dict[str, str] = {}  # adapter id → its base's id, for the adapters in the pickers
        self.heldout_run: str | None = None  # the run the chosen model came from, offered as the held-out set
        self.own_base: dict[str, str] = {}  # model id → its own base's registry id, once found

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="eval-main"):
            with Horizontal(id="eval-pick"):
                yield Select([], prompt="model", id="eval-model")
                yield Select([], prompt="baseline", id="eval-baseline")
                yield Select([], prompt="held-out", id="eval-heldout")
                yield Input(str(REPO_ROOT / "data" / "demo" / "reminders_heldout.jsonl"), id="eval-file")
                yield Button("Run", variant="primary", id="eval-run")
            yield ProgressBar(id="eval-progress", show_eta=True)
            yield Label("", id="eval-status")
            yield DataTable(id="eval-summary", cursor_type="none")
            yield Static("", id="eval-verdict")
            with VerticalScroll(id="eval-voice-box"):
                yield Static("", id="eval-voice")
            yield Label("", id="eval-votes")
            with Horizontal(id="eval-side"):
                yield Static(id="side-expected", classes="side")
                yield Static(id="side-baseline", classes="side")
                yield Static(id="side-model", classes="side")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "eval"
        self.query_one("#eval-heldout", Select).display = False
        self.refresh_models()

    def on_screen_resume(self) -> None:
        self.refresh_models()

    def refresh_models(self) -> None:
        if not self.ensure_bundled_base() and self.registering_base:  # list what is there now, again once it is in
            self.query_one("#eval-status", Label).update(REGISTERING_TEXT)
        listed = models_with_adapters(self.app.store.models())  # each base with its adapters right after it
        ids = [m["id"] for m in listed]
        self.adapter_of = {m["id"]: m["meta"].get("base_id") for m in listed if is_adapter(m)}
        label = {i: f"  └ {self.shown(i)}" if i in self.adapter_of else i for i in ids}
        model, base = self.query_one("#eval-model", Select), self.query_one("#eval-baseline", Select)
        choices = [i for i in ids if i != "base"] or ids
        was_model, was_base = self.ids()  # coming back to the mode keeps what was picked
        model.set_options([(label[i], i) for i in choices])
        base.set_options([(label[i], i) for i in ids])
        if was_base in ids:
            base.value = was_base
        elif "base" in ids:
            base.value = "base"
        if getattr(self.app, "eval_preselect", None) in choices:  # "Evaluate" pressed in Models mode
            model.value, self.app.eval_preselect = self.app.eval_preselect, None
        elif was_model in choices:
            model.value = was_model
        elif ids:
            model.value = choices[0]
        self.load_latest()

    def shown(self, model_id: str) -> str:
        """A model id, or an adapter's with the base it runs on."""
        base = self.adapter_of.get(model_id)
        return f"{model_id} (LoRA of {base})" if base else model_id

    def ids(self) -> tuple[str | None, str | None]:
        m, b = self.query_one("#eval-model", Select).value, self.query_one("#eval-baseline", Select).value
        return (m if isinstance(m, str) else None), (b if isinstance(b, str) else None)  # blank is a sentinel

    def bundled_base_registered(self, error: str | None) -> None:
        # the bundled model missing only removes `base` from the choices
        self.query_one("#eval-status", Label).update(
            "" if error is None else f"[yellow]bundled base not registered: {escape(error)}[/]")
        if error is None:
            self.refresh_models()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "eval-heldout":
            self.query_one("#eval-file", Input).display = self.run_for_heldout() is None
            return
        self.load_latest()

    def offer_run_heldout(self, model: str | None) -> None:
        """Offer "held-out notes of run X" (the default) or the file when the chosen model came from a run."""
        run = (self.app.store.get_model(model, missing_ok=True) or {}).get("run_id") if model else None
        pick = self.query_one("#eval-heldout", Select)
        if run != self.heldout_run:
            self.heldout_run = run
            pick.set_options([(f"held-out notes of run {run}", "run"), ("a file →", "file")] if run else [])
            if run:
                pick.value = "run"
        pick.display = run is not None
        self.query_one("#eval-file", Input).display = self.run_for_heldout() is None

    def run_for_heldout(self) -> str | None:
        """The run whose held-out split to evaluate on, or None for the file."""
        pick = self.query_one("#eval-heldout", Select)
        return self.heldout_run if self.heldout_run and pick.value == "run" else None

    def load_latest(self) -> None:
        model, base = self.ids()
        self.offer_run_heldout(model)
        self.pair = ev.latest_pair(self.app.store, model, base) if model and base else None
        self.compared = None
        self.index = 0
        self.show()
        if self.pair:
            self.compare(*self.pair)

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval-compare")
    def compare(self, m: dict, b: dict) -> None:
        """Lead-N and the bootstrap intervals: a fraction of a second for a hundred prompts, off the UI thread."""
        c = ev.comparison(self.app.store, m, b)
        self.app.call_from_thread(self.show_comparison, m, b, c)

    def show_comparison(self, m: dict, b: dict, c: dict) -> None:
        if self.pair is None or self.pair[0] is not m or self.pair[1] is not b:  # another pair picked meanwhile
            return
        self.compared = c
        self.show()

    # ---- running ------------------------------------------------------------------------------------------
    def action_run(self) -> None:
        model, base = self.ids()
        if not model:
            self.notify("export a model first (Models mode, F5)", severity="warning")
            return
        self.query_one("#eval-run", Button).disabled = True
        self.run_eval(model, base, self.query_one("#eval-file", Input).value.strip(), self.run_for_heldout())

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "eval-run":
            self.action_run()

    @work(thread=True, exclusive=True, exit_on_error=False, group="eval")
    def run_eval(self, model: str, base: str | None, test_file: str, run_id: str | None = None) -> None:
        # Runs in a thread: it reports by message only, never touching a widget.
        def progress(mid: str, done: int, total: int) -> None:
            doing = "checking held-out prompts against the training data" if mid == ev.LEAK_STAGE else \
                "judging the voice (style classifier, profile, copying, loops)" if mid == ev.VOICE_STAGE else \
                f"generating with {mid}"
            self.post_message(EvalProgressed(f"{doing}: {done}/{total}", done, total))

        try:
            r = ev.evaluate(self.app.store, model, base, test_file=None if run_id else test_file, progress=progress,
                            config=self.app.config, run_id=run_id)
        except (StoreError, OSError) as e:
            self.post_message(EvalFinished(str(e)))
        else:
            reused = r.get("baseline_reused")
            notes = [(r.get("heldout") or {}).get("note"),
                     reused and f"{r['baseline_name']}'s answers reused from its eval of {reused['when']}"]
            self.post_message(EvalFinished(note=" · ".join(n for n in notes if n) or None))

    def on_eval_progressed(self, message: EvalProgressed) -> None:
        self.query_one("#eval-progress", ProgressBar).update(total=message.total, progress=message.done)
        self.query_one("#eval-status", Label).update(message.text)

    def on_eval_finished(self, message: EvalFinished) -> None:
        self.query_one("#eval-run", Button).disabled = False
        status = self.query_one("#eval-status", Label)
        if message.error is not None:
            status.update(f"[red]{escape(message.error)}[/]")
            return
        status.update("done" + (f" · {escape(message.note)}" if message.note else ""))
        self.load_latest()

    # ---- showing ------------------------------------------------------------------------------------------
    def show(self) -> None:
        table = self.query_one("#eval-summary", DataTable)
        table.clear(columns=True)
        verdict = self.query_one("#eval-verdict", Static)
        if self.pair is None:
            for sid in ("#side-expected", "#side-baseline", "#side-model"):
                self.query_one(sid, Static).update("")
            verdict.update("")
            self.show_voice(None)
            self.query_one("#eval-votes", Label).update("no evaluation yet: pick a model and press Run (ctrl+g)")
            return
        m, b = self.pair
        c = self.compared
        lead = c["lead"] if c else None
        others = list(c["vs"]) if c else []
        table.add_columns("metric", "tuned", "base", *([lead["id"]] if lead else []),
                          *(f"tuned − {o} (95 % CI)" for o in others))
        for k in METRICS:
            row = [k, ev.fmt_value(m["metrics"].get(k)), ev.fmt_value(b["metrics"].get(k))]
            row += [ev.fmt_value(lead["metrics"].get(k))] if lead else []
            row += [ev.fmt_interval(c["vs"][o].get(k)) if k in ev.QUALITY else "" for o in others]
            table.add_row(*row)
        if c is None:
            verdict.update(Text("comparing…", style="grey50"))
        else:
            lines = Text()
            for sentence in c["sentences"]:
                lines.append("• " + sentence + "\n", style="bold")
            for note in c["notes"]:
                lines.append("• " + note + "\n", style="bold red" if "WARNING" in note else "")
            lines.append("* the interval excludes 0 (paired bootstrap, 1000 resamples)", style="grey50")
            verdict.update(lines)
        self.show_voice(m["metrics"].get("voice"), b["model_id"])
        self.show_prompt()

    def show_voice(self, voice: dict | None, baseline_id: str | None = None) -> None:
        """The voice panel (forge/eval/voice.py): shown when the eval judged the voice against this baseline."""
        from forge.eval.voice import panel

        text = panel(voice, baseline_id)
        self.query_one("#eval-voice-box").display = bool(text)
        if text:
            from rich.markdown import Markdown

            self.query_one("#eval-voice", Static).update(Markdown(text))

    def own_base_of(self, model_id: str) -> str | None:
        """The registry id of the model's own base (a Gemma run's is gemma3-270m), so its side reads `base`. Looked up
        once per model, not on every key press."""
        from forge.eval.systems import registered_base

        base = self.own_base.get(model_id)
        if base is None:  # (None is not kept: the base may be registered meanwhile, e.g. by this mode's first visit)
            base = registered_base(self.app.store, self.app.store.get_model(model_id, missing_ok=True))
            if base is not None:
                self.own_base[model_id] = base
        return base

    def show_prompt(self) -> None:
        m, b = self.pair
        n = len(m["outputs"])
        self.index = max(0, min(self.index, n - 1))
        mo, bo = m["outputs"][self.index], b["outputs"][self.index]
        expected = mo["expected"]
        votes = self.app.store.votes(m["model_id"], b["model_id"], m["dataset"])

        def panel(title: str, text: Text, style: str) -> Panel:
            return Panel(text, title=title, title_align="left", border_style=style)

        prompt = Text(f"{self.index + 1}/{n}  {mo['prompt']}", style="bold")
        self.query_one("#side-expected", Static).update(Group(prompt, panel("expected", Text(expected), "cyan")))
        side = "base" if b["model_id"] in ("base", self.own_base_of(m["model_id"])) else "baseline"
        for sid, rec, title in (("#side-baseline", bo, f"{side} · {self.shown(b['model_id'])}"),
                                ("#side-model", mo, f"tuned · {self.shown(m['model_id'])}")):
            body = Text(rec["error"], style="red") if rec.get("error") else diff_text(expected, rec["output"])
            mark = " ✓" if ev.exact_match(rec.get("output") or "", expected) else ""
            style = "green" if mark else "grey50"
            self.query_one(sid, Static).update(Group(Text(""), panel(title + mark, body, style)))
        wr = ev.win_rate(votes)
        here = votes.get(self.index)
        self.query_one("#eval-votes", Label).update(
            f"votes {wr['votes']}: tuned {wr['model']} · base {wr['baseline']} · tie {wr['tie']}"
            + (f" · win rate {wr['win_rate']:.2f}" if wr["win_rate"] is not None else "")
            + (f"   this prompt: {VOTE_LABEL[here]}" if here else "   t tuned · b base · = tie"))

    def action_step(self, delta: int) -> None:
        if self.pair:
            self.index += delta
            self.show_prompt()

    def action_vote(self, vote: str) -> None:
        if not self.pair:
            return
        m, b = self.pair
        self.app.store.vote(m["model_id"], b["model_id"], m["dataset"], self.index, vote)
        if self.index < len(m["outputs"]) - 1:
            self.index += 1
        self.show_prompt()

    def action_report(self) -> None:
        model, base = self.ids()
        try:
            md, js = ev.report(self.app.store, model, base, self.pair[0]["dataset"] if self.pair else None,
                               self.app.config.workspace_path() / "exports")
        except StoreError as e:
            self.notify(str(e), severity="error")
            return
        self.notify(f"report written: {md.name} and {js.name} in {md.parent}")
