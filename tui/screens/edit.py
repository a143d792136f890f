"""Modal editor: one text area per turn. Saving refuses empty turns; Escape cancels and keeps the old text. For a
preference pair the last turn is the chosen answer (labelled so) and the rejected answer is shown below it, read
only: an edit changes the chosen answer and keeps the rejected one."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static, TextArea


class EditScreen(ModalScreen[list[dict] | None]):
    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, example_id: int, messages: list[dict], rejected: str | None = None) -> None:
        super().__init__()
        self.example_id = example_id
        self.messages = messages
        self.rejected = rejected

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-dialog"):
            yield Label(f"Edit example #{self.example_id}  (ctrl+s save · escape cancel)", id="edit-title")
            with VerticalScroll():
                for i, m in enumerate(self.messages):
                    chosen = self.rejected is not None and i == len(self.messages) - 1
                    yield Label(m["role"] + (" · chosen" if chosen else ""), classes=f"role role-{m['role']}")
                    yield TextArea(m["content"], id=f"turn-{i}", classes="turn", soft_wrap=True)
                if self.rejected is not None:
                    yield Label("rejected (kept as it is)", classes="role role-rejected")
                    yield Static(self.rejected, id="edit-rejected", markup=False)
            yield Static("", id="edit-error")
            with Horizontal(id="edit-buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        areas = list(self.query(TextArea))
        if areas:
            areas[-1].focus()

    def edited_messages(self) -> list[dict]:
        return [{"role": m["role"], "content": self.query_one(f"#turn-{i}", TextArea).text}
                for i, m in enumerate(self.messages)]

    def action_save(self) -> None:
        msgs = self.edited_messages()
        empty = [i + 1 for i, m in enumerate(msgs) if not m["content"].strip()]
        if empty:
            self.query_one("#edit-error", Static).update(
                f"Turn {empty[0]} ({msgs[empty[0] - 1]['role']}) is empty: write something or cancel.")
            return
        self.dismiss(msgs)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_save() if event.button.id == "save" else self.action_cancel()
