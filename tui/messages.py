"""Messages posted by workers to their screen (past tense: they report what happened)."""

from __future__ import annotations

from textual.message import Message


class DuplicatesScanned(Message):
    """The dedup worker embedded what was new and scored every pair above `floor`."""

    def __init__(self, result, floor: float) -> None:
        self.result = result
        self.floor = floor
        super().__init__()


class ScanFailed(Message):
    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__()


class ModelSwapped(Message):
    """The companion now serves `result["model"]` (the admin API's swap result)."""

    def __init__(self, result: dict) -> None:
        self.result = result
        super().__init__()


class BacktranslationProgressed(Message):
    """The backtranslate worker finished one more note; `report` is its report so far (forge.backtranslate)."""

    def __init__(self, report: dict, total: int) -> None:
        self.report = report
        self.total = total
        super().__init__()


class BacktranslationFinished(Message):
    """The backtranslate worker ended: `report` when it ran, else `error` (one line)."""

    def __init__(self, report: dict | None, error: str | None = None) -> None:
        self.report = report
        self.error = error
        super().__init__()
