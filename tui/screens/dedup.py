"""Dedup mode: clusters of near-duplicates, a live threshold, and keys to keep one or all.

Embedding runs in a worker thread with a progress bar. Pairs are scored once down to a floor below the
threshold, so moving the threshold re-clusters instantly without touching the model.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, OptionList, ProgressBar
from textual.widgets.option_list import Option

from forge.data import dedup as dd
from forge.store import StoreError
from tui.messages import DuplicatesScanned, ScanFailed, ScanProgressed
from tui.screens.worker_errors import ReportsWorkerErrors
from tui.widgets.cluster_members import ClusterMembers

FLOOR_GAP = 0.15


class DedupScreen(ReportsWorkerErrors, Screen):
    BINDINGS = [
        Binding("plus,equals_sign,right_square_bracket", "threshold(0.01)", "Threshold +"),
        Binding("minus,left_square_bracket", "threshold(-0.01)", "Threshold −"),
        Binding("h,left", "member(-1)", "Prev member"),
        Binding("l,right", "member(1)", "Next member"),
        Binding("k", "keep_selected", "Keep this one"),
        Binding("x", "keep_policy", "Reject all but one"),
        Binding("K", "keep_all", "Keep all"),
        Binding("u", "undo", "Undo"),
        Binding("R", "rescan", "Rescan"),
    ]
    WORKER_UI = {"dedup-scan": ("dedup", "#dedup-stats", ())}

    def __init__(self) -> None:
        super().__init__()
        self.threshold = 0.0
        self.floor = 1.0
        self.result: dd.DedupResult | None = None
        self.clusters: list[dd.Cluster] = []
        self.marked: set[tuple[int, int]] = set()  # pairs marked "not duplicates" (stored)
        self.history: list[tuple[str, object]] = []  # this screen's actions, for `u`
        self.selected_member = 0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="dedup-bar"):
            yield Label("", id="dedup-threshold")
            yield Label("", id="dedup-stats")
            yield ProgressBar(id="dedup-progress", show_eta=True)
        with Horizontal(id="dedup-main"):
            yield OptionList(id="cluster-list")
            yield ClusterMembers(id="cluster-members")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "dedup"
        self.threshold = self.app.config.dedup.threshold
        self.show_bar("embedding…")
        self.scan(self.threshold - FLOOR_GAP)

    def on_screen_resume(self) -> None:
        if self.result is not None:
            self.recluster(self.query_one("#cluster-list", OptionList).highlighted)

    # ---- scanning --------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="dedup-scan")
    def scan(self, floor: float) -> None:
        floor = max(0.3, floor)
        try:
            result = dd.find_duplicates(self.app.store, self.app.config, floor,
                                        lambda done, total: self.post_message(ScanProgressed(done, total)))
        except Exception as e:  # a missing model or bad config must not take the app down
            self.post_message(ScanFailed(str(e)))
            return
        self.post_message(DuplicatesScanned(result, floor))

    def on_scan_progressed(self, message: ScanProgressed) -> None:
        self.query_one("#dedup-progress", ProgressBar).update(total=message.total, progress=message.done)

    def worker_failed(self, worker, error) -> None:
        self.query_one("#dedup-progress").display = False

    def on_duplicates_scanned(self, message: DuplicatesScanned) -> None:
        self.result, self.floor = message.result, message.floor
        self.query_one("#dedup-progress").display = False
        self.recluster()

    def on_scan_failed(self, message: ScanFailed) -> None:
        self.query_one("#dedup-progress").display = False
        self.query_one("#dedup-stats", Label).update(f"[red]dedup failed: {message.error}[/]")

    def show_bar(self, text: str) -> None:
        self.query_one("#dedup-progress").display = True
        self.query_one("#dedup-stats", Label).update(text)
        self.query_one("#dedup-threshold", Label).update(f"threshold {self.threshold:.2f}")

    # ---- clustering ------------------------------------------------------------------------------------
    def recluster(self, keep_index: int | None = None) -> None:
        if self.result is None:
            return
        ids = sorted({i for p in self.result.pairs for i in p[:2]})
        examples = {e.id: e for e in self.app.store.examples(ids) if e.status != "rejected"}
        self.marked = self.app.store.distinct_pairs()
        live = dd.DedupResult([], 0, 0, [p for p in self.result.pairs if p[0] in examples and p[1] in examples
                                         and (min(p[:2]), max(p[:2])) not in self.marked])
        self.clusters = dd.clusters_at(live, examples, self.threshold)
        self.examples = examples
        options = [Option(f"{c.max_similarity:.3f}  ×{len(c.ids)}  " + " ".join(f"#{i}" for i in c.ids[:4])
                          + (" …" if len(c.ids) > 4 else "")) for c in self.clusters]
        ol = self.query_one("#cluster-list", OptionList)
        ol.clear_options()
        ol.add_options(options)
        self.query_one("#dedup-threshold", Label).update(f"threshold {self.threshold:.2f}")
        in_clusters = sum(len(c.ids) for c in self.clusters)
        self.query_one("#dedup-stats", Label).update(
            f"{len(self.clusters)} clusters · {in_clusters} examples · embedded {self.result.embedded}, "
            f"cached {self.result.cached}")
        if self.clusters:
            ol.highlighted = min(keep_index or 0, len(self.clusters) - 1)
            ol.focus()
        self.show_members()

    @property
    def current(self) -> dd.Cluster | None:
        i = self.query_one("#cluster-list", OptionList).highlighted
        return self.clusters[i] if i is not None and 0 <= i < len(self.clusters) else None

    def show_members(self) -> None:
        c = self.current
        members = [self.examples[i] for i in c.ids] if c else []
        self.selected_member = min(self.selected_member, max(len(members) - 1, 0))
        self.query_one(ClusterMembers).show(members, c.keep if c else None, self.selected_member)

    @on(OptionList.OptionHighlighted)
    def cluster_highlighted(self) -> None:
        self.selected_member = 0
        self.show_members()

    # ---- actions ---------------------------------------------------------------------------------------
    def action_threshold(self, delta: float) -> None:
        self.threshold = round(min(1.0, max(0.3, self.threshold + delta)), 2)
        if self.threshold < self.floor:  # below what was scored: score again, lower
            self.show_bar("scoring pairs…")
            self.scan(self.threshold - FLOOR_GAP)
        else:
            self.recluster()

    def action_member(self, delta: int) -> None:
        c = self.current
        if c:
            self.selected_member = (self.selected_member + delta) % len(c.ids)
            self.show_members()

    def _keep(self, keep_id: int) -> None:
        c = self.current
        index = self.query_one("#cluster-list", OptionList).highlighted
        try:
            decision = dd.keep_one(self.app.store, c.ids, keep_id)
        except StoreError as e:
            self.notify(str(e), severity="error")
            return
        if decision:
            self.history.append(("decision", decision))
            self.notify(f"kept #{keep_id}, rejected {len(c.ids) - 1} (u to undo)")
        self.recluster(index)

    def action_keep_selected(self) -> None:
        c = self.current
        if c:
            self._keep(c.ids[self.selected_member])

    def action_keep_policy(self) -> None:
        c = self.current
        if c:
            self._keep(c.keep)

    def action_keep_all(self) -> None:
        c = self.current
        if c:
            index = self.query_one("#cluster-list", OptionList).highlighted
            self.app.store.mark_distinct(c.ids)
            self.history.append(("distinct", c.ids))
            self.notify(f"kept all {len(c.ids)}: marked as not duplicates, remembered (u to undo)")
            self.recluster(index)

    def action_undo(self) -> None:
        if self.history and self.history[-1][0] == "distinct":
            _, ids = self.history.pop()
            self.app.store.mark_distinct(ids, distinct=False)
            self.notify(f"{len(ids)} examples are candidates again")
            self.recluster(self.query_one("#cluster-list", OptionList).highlighted)
            return
        if self.history:
            self.history.pop()
        try:
            r = self.app.store.undo()
        except StoreError as e:
            self.notify(str(e), severity="warning")
            return
        self.notify(f"undid {r['undone']} of {len(r['example_ids'])} examples")
        self.recluster(self.query_one("#cluster-list", OptionList).highlighted)

    def action_rescan(self) -> None:
        self.show_bar("embedding…")
        self.scan(self.threshold - FLOOR_GAP)
