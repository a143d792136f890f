"""Curate mode: one example at a time; approve, reject, edit with single keys; undo and redo; search and filter.

Each decision is committed to the store before the view moves on (a ~1 ms SQLite transaction), so what the
screen shows is always what is stored.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from forge import backtranslate, curate
from forge.store import STATUSES, StoreError
from tui.messages import TokenizerLoaded
from tui.screens.backtranslate_dialog import BacktranslateScreen
from tui.screens.edit import EditScreen
from tui.screens.export_dialog import ExportScreen
from tui.screens.generate_dialog import GenerateScreen
from tui.screens.import_dialog import ImportScreen
from tui.screens.worker_errors import ReportsWorkerErrors
from tui.widgets.counts_bar import CountsBar
from tui.widgets.example_view import ExampleView

STATUS_CYCLE = [None, *STATUSES]


class CurateScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("r", "reject", "Reject"),
        Binding("e", "edit", "Edit"),
        Binding("u", "undo", "Undo"),
        Binding("U", "redo", "Redo"),
        Binding("j", "next", "Next"),
        Binding("k", "previous", "Prev"),
        Binding("slash", "search", "Search"),
        Binding("s", "cycle_status", "Status filter"),
        Binding("t", "focus_tag", "Tag filter", show=False),
        Binding("o", "focus_source", "Source filter", show=False),
        Binding("i", "import", "Import"),
        Binding("x", "export", "Export dataset"),
        Binding("g", "generate", "Generate", show=False),
        Binding("B", "backtranslate", "Write prompts", show=False),
        Binding("escape", "leave_input", "Back", show=False),
    ]
    WORKER_UI = {"tokenizer": ("loading the validation tokenizer", None, ())}

    def __init__(self) -> None:
        super().__init__()
        self.status_filter: str | None = "pending"
        self.ids: list[int] = []
        self.index = 0
        self.counts: dict[str, int] = {}
        # Approval counts tokens with config.json's validation.tokenizer: loading it takes seconds (transformers),
        # so it loads in a worker and approvals made meanwhile wait for it, in order.
        self.tokenizer_ready = True
        self.tokenizer_error: str | None = None
        self.waiting_approvals: list[int] = []

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield CountsBar(id="counts")
        with Horizontal(id="filters"):
            yield Input(placeholder="/ search", id="search")
            yield Input(placeholder="t tag", id="tag")
            yield Input(placeholder="o source", id="source")
        yield ExampleView(id="example")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "forge"
        self.sub_title = "curate"
        self.reload()
        self.query_one(ExampleView).focus()
        if self.app.config.validation.tokenizer:
            self.tokenizer_ready = False
            self.notify(f"loading the tokenizer {self.app.config.validation.tokenizer} to check lengths at approval…",
                        timeout=4)
            self.load_tokenizer(self.app.config.validation.tokenizer)

    @work(thread=True, exclusive=True, exit_on_error=False, group="tokenizer")
    def load_tokenizer(self, path: str) -> None:
        from forge.validate import count_length

        try:
            count_length([{"role": "user", "content": "x"}], path)  # loads it once (cached for the process)
        except Exception as e:  # noqa: BLE001 - a wrong path is the person's to fix in config.json
            self.post_message(TokenizerLoaded(f"{path}: {e}"))
            return
        self.post_message(TokenizerLoaded())

    def on_tokenizer_loaded(self, message: TokenizerLoaded) -> None:
        self.tokenizer_ready, self.tokenizer_error = True, message.error
        if message.error:
            self.notify(f"approval is off: the tokenizer could not be loaded ({message.error}); fix "
                        f"validation.tokenizer in config.json", severity="error", timeout=10, markup=False)
        waiting, self.waiting_approvals = self.waiting_approvals, []
        for eid in waiting if not message.error else []:
            try:
                curate.approve(self.store, eid, self.app.config)
            except StoreError as e:
                self.notify(str(e), severity="error", timeout=6)
        if waiting:
            self.counts = self.store.counts()
            self.show_current()

    def worker_failed(self, worker, error) -> None:
        if worker.group == "tokenizer":
            self.on_tokenizer_loaded(TokenizerLoaded(str(error)))

    def on_screen_resume(self) -> None:
        # Another mode (dedup) may have changed statuses meanwhile.
        if self.is_mounted:
            self.reload(keep_id=self.current_id)

    # ---- state --------------------------------------------------------------------------------------
    @property
    def store(self):
        return self.app.store

    @property
    def current_id(self) -> int | None:
        return self.ids[self.index] if 0 <= self.index < len(self.ids) else None

    def filter_text(self) -> str:
        parts = [f"status={self.status_filter or 'all'}"]
        for name in ("search", "tag", "source"):
            v = self.query_one(f"#{name}", Input).value.strip()
            if v:
                parts.append(f"{name}={v}")
        return " ".join(parts)

    def reload(self, keep_id: int | None = None) -> None:
        """Re-read the id list for the current filters, staying on keep_id when it is still listed."""
        try:
            self.ids = self.store.ids(
                status=self.status_filter,
                search=self.query_one("#search", Input).value or None,
                tag=self.query_one("#tag", Input).value.strip() or None,
                source=self.query_one("#source", Input).value.strip() or None)
        except StoreError as e:  # e.g. a search query FTS5 cannot parse, mid-typing
            self.notify(str(e), severity="error")
            self.ids = []
        self.index = self.ids.index(keep_id) if keep_id in self.ids else 0
        self.counts = self.store.counts()
        self.show_current()

    def show_current(self) -> None:
        self.query_one(CountsBar).show(self.counts, self.filter_text())
        eid = self.current_id
        view = self.query_one(ExampleView)
        if eid is None:
            hint = ("No examples yet: press i to import a vault, CSV or JSONL." if not self.counts.get("total")
                    else "Nothing matches this filter. Press s to change the status filter.")
            last = self.store.last_import() if not self.counts.get("total") else None
            if last and last["report"].get("hint"):
                hint = (f"The last import ({last['path']}) found nothing to curate:\n{last['report']['hint']}\n\n"
                        f"Press i to import again: for a vault, the survey shows its tags and folders to pick from.")
            view.show(None, empty_message=hint)
            return
        ex = self.store.get(eid)
        prov = backtranslate.provenance(self.store, ex)
        view.show(ex, f"{self.index + 1}/{len(self.ids)}",
                  provenance=backtranslate.describe_provenance(prov) if prov else "")

    def _count_change(self, before: str, after: str) -> None:
        self.counts[before] -= 1
        self.counts[after] += 1

    # ---- actions --------------------------------------------------------------------------------------
    def _decide(self, status: str) -> None:
        eid = self.current_id
        if eid is None:
            self.app.bell()
            return
        if status == "approved" and (not self.tokenizer_ready or self.tokenizer_error):
            if self.tokenizer_error:
                self.notify(f"approval is off: {self.tokenizer_error}", severity="error", markup=False)
                return
            if eid not in self.waiting_approvals:  # approved once the tokenizer is in (a moment)
                self.waiting_approvals.append(eid)
                self.notify(f"#{eid} is approved once the tokenizer has loaded", timeout=3)
            if self.index < len(self.ids) - 1:
                self.index += 1
            self.show_current()
            return
        if eid in self.waiting_approvals:  # rejected meanwhile: the later decision wins
            self.waiting_approvals.remove(eid)
        before = self.store.get(eid).status
        try:
            if status == "approved":
                curate.approve(self.store, eid, self.app.config)
            else:
                curate.reject(self.store, eid)
        except StoreError as e:
            self.notify(str(e), severity="error", timeout=6)
            return
        self._count_change(before, status)
        if self.index < len(self.ids) - 1:
            self.index += 1
        self.show_current()

    def action_approve(self) -> None:
        self._decide("approved")

    def action_reject(self) -> None:
        self._decide("rejected")

    def action_next(self) -> None:
        if self.index < len(self.ids) - 1:
            self.index += 1
            self.show_current()
        else:
            self.app.bell()

    def action_previous(self) -> None:
        if self.index > 0:
            self.index -= 1
            self.show_current()
        else:
            self.app.bell()

    def _replay(self, fn, verb: str) -> None:
        try:
            result = fn()
        except StoreError as e:
            self.notify(str(e), severity="warning")
            return
        touched = result["example_ids"]
        self.notify(f"{verb} {result.get('undone') or result.get('redone')} of #{', #'.join(map(str, touched[:5]))}")
        self.counts = self.store.counts()
        target = next((i for i in touched if i in self.ids), None)
        if target is not None:
            self.index = self.ids.index(target)
            self.show_current()
        else:
            self.reload(keep_id=touched[0])

    def action_undo(self) -> None:
        self._replay(self.store.undo, "undid")

    def action_redo(self) -> None:
        self._replay(self.store.redo, "redid")

    def action_edit(self) -> None:
        eid = self.current_id
        if eid is None:
            self.app.bell()
            return
        ex = self.store.get(eid)

        def saved(messages: list[dict] | None) -> None:
            if messages is None:
                return
            try:
                curate.edit(self.store, eid, messages)
            except StoreError as e:
                self.notify(str(e), severity="error", timeout=6)
                return
            self.notify(f"saved edit of #{eid}")
            self.show_current()

        self.app.push_screen(EditScreen(eid, ex.messages), saved)

    def action_cycle_status(self) -> None:
        i = STATUS_CYCLE.index(self.status_filter)
        self.status_filter = STATUS_CYCLE[(i + 1) % len(STATUS_CYCLE)]
        self.reload(keep_id=self.current_id)

    def set_status_filter(self, status: str | None) -> None:
        self.status_filter = status
        self.reload(keep_id=self.current_id)

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_focus_tag(self) -> None:
        self.query_one("#tag", Input).focus()

    def action_focus_source(self) -> None:
        self.query_one("#source", Input).focus()

    def action_leave_input(self) -> None:
        self.query_one(ExampleView).focus()

    @on(Input.Changed)
    def filter_changed(self, event: Input.Changed) -> None:
        self.reload(keep_id=self.current_id)

    @on(Input.Submitted)
    def filter_submitted(self, event: Input.Submitted) -> None:
        self.query_one(ExampleView).focus()

    def action_import(self) -> None:
        def closed(report: dict | None) -> None:
            if report is not None:
                self.reload(keep_id=self.current_id)

        self.app.push_screen(ImportScreen(self.app.default_import_path), closed)

    def action_generate(self) -> None:
        def closed(report: dict | None) -> None:
            if report is not None:
                self.reload(keep_id=self.current_id)

        self.app.push_screen(GenerateScreen(), closed)

    def action_backtranslate(self) -> None:
        def closed(report: dict | None) -> None:
            if report is not None:
                self.reload(keep_id=self.current_id)

        self.app.push_screen(BacktranslateScreen(), closed)

    def action_export(self) -> None:
        self.app.push_screen(ExportScreen(str(self.app.config.workspace_path() / "exports" / "dataset")))
