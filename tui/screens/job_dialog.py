"""The shape the import, export and generate dialogs share: a Start button that runs one job in a worker, and
Close / Escape that dismiss with the job's last report (None if nothing ran). A job that fails unforeseen is said in
the dialog and its Start button works again (ReportsWorkerErrors, WORKER_UI)."""

from __future__ import annotations

from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Button

from tui.screens.worker_errors import ReportsWorkerErrors


class JobDialog(ReportsWorkerErrors, ModalScreen[dict | None]):
    BINDINGS = [Binding("escape", "close", "Close")]
    START_ID = ""  # the id of the button that starts the job

    def __init__(self) -> None:
        super().__init__()
        self.result: dict | None = None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == self.START_ID:
            self.start()
        else:
            self.action_close()

    def action_close(self) -> None:
        self.dismiss(self.result)

    def start(self) -> None:
        raise NotImplementedError
