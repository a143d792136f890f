"""One handler for workers that fail, mixed into every screen and dialog that runs workers.

Workers run with `exit_on_error=False` so that a fault in one job never takes the app down; without a handler its
exception would vanish and the screen would stay on its last progress line ("[merge]…") with its buttons disabled.
Textual posts `Worker.StateChanged` to the node that started the worker, so the screen that owns the worker is the
one that hears of the failure: it says so (a toast and its status line) and enables its controls again.
"""

from __future__ import annotations

from rich.markup import escape
from textual.worker import Worker, WorkerState


class ReportsWorkerErrors:
    """Put before `Screen` / `ModalScreen` in the bases. WORKER_UI maps a worker group to (what the person would
    call the job, the id of the status line that reports it, the ids of the controls to enable again); a group not
    listed is reported with a toast only. `worker_failed` is the hook for any state the screen must reset."""

    WORKER_UI: dict[str, tuple[str, str | None, tuple[str, ...]]] = {}

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        worker = event.worker
        what, status_id, controls = self.WORKER_UI.get(worker.group, (worker.name or worker.group, None, ()))
        error = worker.error
        reason = " ".join(str(error).split()) or type(error).__name__  # one line, whatever the exception held
        self.notify(f"{what} failed: {reason}", severity="error", timeout=10, markup=False)
        if status_id:
            self.query_one(status_id).update(f"[red]{escape(what)} failed: {escape(reason)}[/]")
        for control in controls:
            self.query_one(control).disabled = False
        self.worker_failed(worker, error)

    def worker_failed(self, worker: Worker, error: BaseException) -> None:
        """Reset whatever else the screen holds for `worker` (progress bars, flags)."""
