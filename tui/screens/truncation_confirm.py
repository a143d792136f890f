"""Asked before a run starts when an explicit max_seq_len would truncate more than 2 % of the training examples:
the length summary, and Train anyway / Cancel. Dismisses with True to go on."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from forge.train.lengths import summary_lines


class TruncationConfirm(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, report: dict) -> None:
        super().__init__()
        self.report = report

    def compose(self) -> ComposeResult:
        r = self.report
        with Vertical(id="truncation-dialog"):
            yield Label(f"[b]max_seq_len {r['max_seq_len']} truncates {r['over']} of {r['n']} examples "
                        f"({r['over_share']:.0%})[/b]")
            yield Static("\n".join(summary_lines(r)), id="truncation-summary", markup=False)
            yield Label(f"max_seq_len auto would use the p98 length ({r['p98']} tokens). Train anyway?")
            with Horizontal(id="truncation-buttons"):
                yield Button("Train anyway", variant="warning", id="truncation-yes")
                yield Button("Cancel", variant="primary", id="truncation-no")

    def on_mount(self) -> None:
        self.query_one("#truncation-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "truncation-yes")

    def action_cancel(self) -> None:
        self.dismiss(False)
