"""Curate mode: one example at a time; approve, reject, edit with single keys; undo and redo; search and filter.

Each decision is committed to the store before the view moves on (a ~1 ms SQLite transaction), so what the
screen shows is always what is stored.

The screen never holds every matching id: it keeps a window of a few pages around the current example and reads
the next page by keyset (`id > last ORDER BY id LIMIT n`, on the index of the filter) when a key moves past the
window's end, so the next example costs the same in a million as in a hundred. The position "12/1,000,000" comes
from the trigger-kept counts for a status filter and from a capped count otherwise ("…/1,000+").
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from forge.data import curate
from forge.llm import backtranslate
from forge.store import STATUSES, StoreError
from tui.messages import PreferencesCounted, TokenizerLoaded
from tui.screens.backtranslate_dialog import BacktranslateScreen
from tui.screens.edit import EditScreen
from tui.screens.export_dialog import ExportScreen
from tui.screens.generate_dialog import GenerateScreen
from tui.screens.import_dialog import ImportScreen
from tui.screens.worker_errors import ReportsWorkerErrors
from tui.widgets.counts_bar import CountsBar
from tui.widgets.example_view import ExampleView

STATUS_CYCLE = [None, *STATUSES]


class PositionCounted(Message):
    """The position worker counted `below` matching examples under the status filter before `anchor`."""

    def __init__(self, generation: int, anchor: int, below: int) -> None:
        self.generation, self.anchor, self.below = generation, anchor, below
        super().__init__()


PAGE = 100  # ids read per keyset page
WINDOW_MAX = 3 * PAGE  # ids kept around the current one; the far end is dropped past this
COUNT_CAP = 1_000  # a count on the key path stops here ("…/1,000+"); a status filter's is finished in a worker


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
    WORKER_UI = {"tokenizer": ("loading the validation tokenizer", None, ()),
                 "position": ("counting the position", None, ()),
                 "preferences": ("counting preference pairs", None, ())}
    count_cap = COUNT_CAP

    def __init__(self) -> None:
        super().__init__()
        self.status_filter: str | None = "pending"
        # A window of the ids matching the filters, in id order, read by keyset pages around the current one (never
        # all of them): ids[pos] is shown, `window_start` matching ids come before ids[0] (None: more than COUNT_CAP).
        # Like the full list it replaces, it is re-read only when the filters change, so an example just decided
        # stays in it and k goes back to it.
        self.ids: list[int] = []
        self.pos = 0
        self.window_start: int | None = 0
        self.total = 0  # matching examples when the filters were set
        self.total_capped = False  # a count that stopped at count_cap + 1 (search, tag or source filter)
        self.generation = 0  # bumped by each reload: a position counted for older filters is dropped
        self.counts: dict[str, int] = {}
        self.prefs: dict | None = None  # forge/data/preferences.py counts, refreshed in a worker after decisions
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
        from forge.data.validate import count_length

        try:
            count_length([{"role": "user", "content": "x"}], path)  # loads it once (cached for the process)
        except Exception as e:  # noqa: BLE001 - a wrong path is the person's to fix in config.json
            self.post_message(TokenizerLoaded(f"{path}: {e}"))
            return
        self.post_message(TokenizerLoaded())

    def on_tokenizer_loaded(self, message: TokenizerLoaded) -> None:
        self.tokenizer_ready, self.tokenizer_error = True, message.error
        self.app.settle_heap()  # transformers' objects, out of the collector's sight
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
            self.count_preferences()
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
        return self.ids[self.pos] if 0 <= self.pos < len(self.ids) else None

    @property
    def index(self) -> int:
        """The current example's place among the matching ones, from 0 (within the window when not counted)."""
        return (self.window_start or 0) + self.pos

    def filters(self) -> dict:
        return {"status": self.status_filter,
                "search": self.query_one("#search", Input).value or None,
                "tag": self.query_one("#tag", Input).value.strip() or None,
                "source": self.query_one("#source", Input).value.strip() or None}

    def _page(self, **where) -> list[int]:
        try:
            return self.store.page(**self.filters(), limit=PAGE, **where)
        except StoreError:  # the filters stopped parsing since the reload that reported it: nothing more
            return []

    def _step(self, delta: int) -> bool:
        """Move one example on (+1) or back (-1), reading the next keyset page past the window's end. False at
        the first or last match."""
        if not self.ids:
            return False
        if delta > 0 and self.pos == len(self.ids) - 1:
            more = self._page(after=self.ids[-1])
            if not more:
                return False
            self.ids += more
            if len(self.ids) > WINDOW_MAX:
                drop = len(self.ids) - WINDOW_MAX
                del self.ids[:drop]
                self.pos -= drop
                self.window_start = None if self.window_start is None else self.window_start + drop
        elif delta < 0 and self.pos == 0:
            more = self._page(before=self.ids[0])
            if not more:
                return False
            self.ids[:0] = more
            self.pos += len(more)
            self.window_start = None if self.window_start is None else max(0, self.window_start - len(more))
            del self.ids[WINDOW_MAX:]
        self.pos += delta
        return True

    def _locate(self, eid: int) -> bool:
        """Move to eid when the window holds it."""
        if eid in self.ids:
            self.pos = self.ids.index(eid)
            return True
        return False

    def filter_text(self) -> str:
        parts = [f"status={self.status_filter or 'all'}"]
        for name in ("search", "tag", "source"):
            v = self.query_one(f"#{name}", Input).value.strip()
            if v:
                parts.append(f"{name}={v}")
        return " ".join(parts)

    def reload(self, keep_id: int | None = None) -> None:
        """Re-read the window for the current filters, staying on keep_id when it still matches (else the first
        match): a page before it and a page from it, and the counts."""
        f = self.filters()
        self.generation += 1
        try:
            ids = self.store.page(**f, after=keep_id - 1, limit=PAGE) if keep_id is not None else []
            if ids and ids[0] == keep_id:
                before = self.store.page(**f, before=keep_id, limit=PAGE)
                self.ids, self.pos = before + ids, len(before)
            else:
                self.ids, self.pos = self.store.page(**f, limit=PAGE), 0
            self.total = self.store.count(**f, cap=self.count_cap)  # a status filter's is exact (counts table)
            self.total_capped = self.total > self.count_cap and bool(f["search"] or f["tag"] or f["source"])
            self.window_start = self.store.count(**f, below=self.ids[0], cap=self.count_cap) if self.ids else 0
            if self.window_start > self.count_cap:
                self.window_start = None
                if not (f["search"] or f["tag"] or f["source"]):  # an index-only count: exact, off the key path
                    self.count_position(self.store, self.generation, f["status"], self.ids[0])
        except StoreError as e:  # e.g. a search query FTS5 cannot parse, mid-typing
            self.notify(str(e), severity="error")
            self.ids, self.pos, self.window_start, self.total, self.total_capped = [], 0, 0, 0, False
        self.counts = self.store.counts()
        self.count_preferences()
        self.show_current()

    @work(thread=True, exclusive=True, exit_on_error=False, group="preferences")
    def count_preferences(self) -> None:
        """The preference pairs by source (it reads the whole store: off the UI thread, after a pause so a burst of
        keystrokes counts once)."""
        import time

        from textual.worker import get_current_worker

        from forge.data.preferences import counts

        time.sleep(0.5)
        if not get_current_worker().is_cancelled:
            self.post_message(PreferencesCounted(counts(self.store)))

    def on_preferences_counted(self, message: PreferencesCounted) -> None:
        if message.counts != self.prefs:
            self.prefs = message.counts
            self.query_one(CountsBar).show(self.counts, self.filter_text(), self.prefs)

    @work(thread=True, exclusive=True, exit_on_error=False, group="position")
    def count_position(self, store, generation: int, status: str | None, anchor: int) -> None:
        self.post_message(PositionCounted(generation, anchor, store.count(status=status, below=anchor)))

    def on_position_counted(self, message: PositionCounted) -> None:
        if message.generation == self.generation and message.anchor in self.ids:
            self.window_start = message.below - self.ids.index(message.anchor)
            self.show_current()

    def position_text(self) -> str:
        place = f"{self.window_start + self.pos + 1:,}" if self.window_start is not None else "…"
        total = f"{self.count_cap:,}+" if self.total_capped else f"{self.total:,}"
        return f"{place}/{total}"

    def show_current(self) -> None:
        self.query_one(CountsBar).show(self.counts, self.filter_text(), self.prefs)
        view = self.query_one(ExampleView)
        ex = None
        while ex is None and self.current_id is not None:
            gone = self.current_id
            try:
                ex = self.store.get(gone)
            except StoreError:  # deleted since the window was read: the next match takes its place
                del self.ids[self.pos]
                self.total = max(0, self.total - 1)
                if self.pos == len(self.ids):
                    more = self._page(after=gone)
                    if more:
                        self.ids += more
                    elif self.pos > 0:
                        self.pos -= 1
        eid = self.current_id
        if eid is None:
            hint = ("No examples yet: press i to import a vault, CSV or JSONL." if not self.counts.get("total")
                    else "Nothing matches this filter. Press s to change the status filter.")
            last = self.store.last_import() if not self.counts.get("total") else None
            if last and last["report"].get("hint"):
                hint = (f"The last import ({last['path']}) found nothing to curate:\n{last['report']['hint']}\n\n"
                        f"Press i to import again: for a vault, the survey shows its tags and folders to pick from.")
            view.show(None, empty_message=hint)
            return
        prov = backtranslate.provenance(self.store, ex)
        view.show(ex, self.position_text(),
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
            self._step(1)
            self.show_current()
            return
        if eid in self.waiting_approvals:  # rejected meanwhile: the later decision wins
            self.waiting_approvals.remove(eid)
        ex = self.store.get(eid)
        before = ex.status
        try:
            if status == "approved":
                curate.approve(self.store, eid, self.app.config)
            else:
                curate.reject(self.store, eid)
        except StoreError as e:
            self.notify(str(e), severity="error", timeout=6)
            return
        self._count_change(before, status)
        if ex.edited or ex.rejected is not None:  # only these decisions make or unmake a pair
            self.count_preferences()
        self._step(1)
        self.show_current()

    def action_approve(self) -> None:
        self._decide("approved")

    def action_reject(self) -> None:
        self._decide("rejected")

    def action_next(self) -> None:
        if self._step(1):
            self.show_current()
        else:
            self.app.bell()

    def action_previous(self) -> None:
        if self._step(-1):
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
        self.count_preferences()
        if any(self._locate(i) for i in touched):
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
            self.count_preferences()
            self.show_current()

        self.app.push_screen(EditScreen(eid, ex.messages, ex.rejected), saved)

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
