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
    """The backtranslate worker finished one more note; `report` is its report so far (forge.llm.backtranslate)."""

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


class ScanProgressed(Message):
    """The dedup worker embedded `done` of `total` examples."""

    def __init__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        super().__init__()


class RunStarted(Message):
    """The train-start worker created run `run_id` and launched its runner process `proc`."""

    def __init__(self, run_id: str, run_dir, proc) -> None:
        self.run_id, self.run_dir, self.proc = run_id, run_dir, proc
        super().__init__()


class LengthsMeasured(Message):
    """The train-start worker measured the training examples' lengths (forge.train.lengths.plan's report)."""

    def __init__(self, report: dict) -> None:
        self.report = report
        super().__init__()


class RunStartFailed(Message):
    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__()


class ExportProgressed(Message):
    """The model export reached `stage` (one of forge.models.export.STAGES)."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage, self.message = stage, message
        super().__init__()


class ExportFinished(Message):
    """The model export ended: `result` (forge.models.export.export_run's) when it ran, else `error` (one line)."""

    def __init__(self, result: dict | None, error: str | None = None) -> None:
        self.result, self.error = result, error
        super().__init__()


class SwapProgressed(Message):
    """A line about the swap (or the start) of the companion, as its stages pass; `done` on the last one."""

    def __init__(self, text: str, done: bool = False) -> None:
        self.text, self.done = text, done
        super().__init__()


class DatasetExported(Message):
    """The dataset export ended: `report` (forge.data.dataset.export_dataset's) when it ran, else `error`."""

    def __init__(self, report: dict | None, error: str | None = None) -> None:
        self.report, self.error = report, error
        super().__init__()


class EvalProgressed(Message):
    def __init__(self, text: str, done: int, total: int) -> None:
        self.text, self.done, self.total = text, done, total
        super().__init__()


class EvalFinished(Message):
    """The eval run ended: stored when `error` is None; `note` says what it used instead of what was asked (a run's
    val split when its test split is empty)."""

    def __init__(self, error: str | None = None, note: str | None = None) -> None:
        self.error, self.note = error, note
        super().__init__()


class GenerationProgressed(Message):
    """The generate worker's report so far (forge.llm.generate.Report.to_json())."""

    def __init__(self, report: dict, total: int) -> None:
        self.report, self.total = report, total
        super().__init__()


class GenerationFinished(Message):
    def __init__(self, report: dict | None, error: str | None = None) -> None:
        self.report, self.error = report, error
        super().__init__()


class ReplyStreamed(Message):
    """More of the chat reply to `turn` (the user turn it answers) arrived: `text` so far."""

    def __init__(self, turn: dict, text: str, model: str) -> None:
        self.turn, self.text, self.model = turn, text, model
        super().__init__()


class ReplyFinished(Message):
    """The chat reply to `turn` ended: its `text` and timings, or `error` (then the turn is taken back)."""

    def __init__(self, turn: dict, text: str, model: str, tokens: int = 0, seconds: float = 0.0,
                 first_token_s: float | None = None, error: str | None = None) -> None:
        self.turn, self.text, self.model, self.error = turn, text, model, error
        self.tokens, self.seconds, self.first_token_s = tokens, seconds, first_token_s
        super().__init__()


class CompanionStopped(Message):
    """The companion child process this UI started has exited (after SIGTERM, or SIGKILL after the timeout)."""


class BaseRegistered(Message):
    """The bundled base model is in the registry (copied and hashed on the first start), or `error` says why not."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error
        super().__init__()


class TokenizerLoaded(Message):
    """The tokenizer that approval counts tokens with is loaded, or `error` says why not."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error
        super().__init__()


class AdapterAdded(Message):
    """The companion loaded LoRA adapter `adapter_id` on its base (POST /admin/adapters): `result`, else `error`."""

    def __init__(self, adapter_id: str, result: dict | None, error: str | None = None) -> None:
        self.adapter_id, self.result, self.error = adapter_id, result, error
        super().__init__()


class PreferencesCounted(Message):
    """A preference-count worker read the store: `counts` is forge.data.preferences.counts()."""

    def __init__(self, counts: dict) -> None:
        self.counts = counts
        super().__init__()
