"""Import dialog: vault, CSV/TSV, JSONL or a dataset file/folder (Parquet, Arrow, save_to_disk), with progress. The
extraction runs in a worker thread.

For a vault the first step is a survey (notes, folders, tags with counts): the person picks the tags and folders to
take, pre-filled with what they chose for this vault last time (remembered in the workspace) or config.json's
tags. Workers report by message; only the dialog touches its widgets.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Select, SelectionList, Static

from forge.data.extract import run_extract
from forge.data.extract.common import SKIP_CODES
from forge.data.extract.dataset import is_dataset_path
from tui.screens.job_dialog import JobDialog


class VaultSurveyed(Message):
    def __init__(self, path: str, survey: dict, remembered: dict | None) -> None:
        self.path, self.survey, self.remembered = path, survey, remembered
        super().__init__()


class ImportProgressed(Message):
    def __init__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        super().__init__()


class ExamplesImported(Message):
    def __init__(self, report: dict) -> None:
        self.report = report
        super().__init__()


class ImportFailed(Message):
    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__()


def report_lines(result: dict, limit: int = 8) -> list[str]:
    """The import report as the dialog and Curate's empty screen show it."""
    lines = [(f"read {result['read']} · " if result.get("read") else "")
             + f"added {result['added']} · updated {result['updated']} · unchanged {result['unchanged']}"
             + f" · kept {result['kept']} · skipped {len(result['skipped'])}"]
    chunked = result.get("chunked") or {}
    if chunked.get("notes"):
        lines.append(f"{chunked['notes']} long note(s) split at headings into {chunked['examples']} examples")
    repaired = result.get("repaired") or []
    if repaired:
        first = repaired[0]
        lines.append(f"{len(repaired)} note(s) with frontmatter that is not valid YAML, read key by key "
                     f"(e.g. {first['source']}: {first['reason'].split(': ', 1)[-1]})")
    if result.get("reasons"):
        lines.append("skipped: " + ", ".join(f"{n} {SKIP_CODES.get(c, c)}" for c, n in
                                             sorted(result["reasons"].items(), key=lambda kv: -kv[1])))
    shown = [s for s in result["skipped"] if s.get("code") not in ("tag-filter", "folder-filter", "not-a-note")]
    lines += [f"  {s['source']}: {s['reason']}" for s in shown[:limit]]
    if len(shown) > limit:
        lines.append(f"  … and {len(shown) - limit} more (forge extract … --json lists all)")
    if result.get("hint"):
        lines.append(f"[b]{result['hint']}[/b]")
    return lines


class ImportScreen(JobDialog):
    """Dismisses with the last import's report (None if nothing was imported)."""

    START_ID = "import-start"
    WORKER_UI = {"import": ("import", "#import-report", ("#import-start",))}

    def __init__(self, default_path: str = "") -> None:
        super().__init__()
        self.default_path = default_path
        self.surveyed: str | None = None  # the vault path the survey shown is of
        self._folder_names: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="import-dialog"):
            yield Label("Import examples", id="import-title")
            yield Select([("Obsidian vault (folder)", "obsidian"), ("CSV / TSV file", "csv"),
                          ("LLM output or a chat export (JSONL / JSON)", "jsonl"),
                          ("Dataset (Parquet / Arrow file, save_to_disk folder)", "dataset")],
                         value="obsidian", allow_blank=False,
                         id="import-kind")
            yield Input(self.default_path, placeholder="path to the vault folder or file", id="import-path")
            with Horizontal(id="csv-columns"):
                yield Input(placeholder="prompt column (auto)", id="prompt-column")
                yield Input(placeholder="response column (auto)", id="response-column")
            with Vertical(id="vault-survey"):
                yield Static("", id="survey-summary")
                with Horizontal(id="survey-options"):
                    yield Checkbox("All notes, whatever their tags", id="all-notes")
                    yield Checkbox("Train on these in your voice (the voice recipe)", value=True, id="voice-recipe")
                with Horizontal(id="survey-lists"):
                    yield SelectionList[str](id="survey-tags")
                    yield SelectionList[str](id="survey-folders")
            yield ProgressBar(id="import-progress", show_eta=True)
            yield Static("", id="import-report")
            with Horizontal(id="import-buttons"):
                yield Button("Survey vault", variant="primary", id="import-start")
                yield Button("Close", id="import-close")

    def on_mount(self) -> None:
        self.query_one("#csv-columns").display = False
        self.query_one("#vault-survey").display = False
        self.query_one("#survey-tags", SelectionList).border_title = "tags to take"
        self.query_one("#survey-folders", SelectionList).border_title = "folders to read"
        self.query_one("#import-path", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.query_one("#csv-columns").display = event.value in ("csv", "dataset")
        self._reset_survey()

    @on(Input.Changed, "#import-path")
    def _path_changed(self) -> None:
        if self.surveyed is not None and self._path_text() != self.surveyed:
            self._reset_survey()

    @on(Checkbox.Changed, "#all-notes")
    def _all_notes_changed(self, event: Checkbox.Changed) -> None:
        self.query_one("#survey-tags", SelectionList).disabled = event.value

    def _reset_survey(self) -> None:
        self.surveyed = None
        self.query_one("#vault-survey").display = False
        kind = self.query_one("#import-kind", Select).value
        self.query_one("#import-start", Button).label = "Survey vault" if kind == "obsidian" else "Import"

    def _path_text(self) -> str:
        return self.query_one("#import-path", Input).value.strip()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start()

    def start(self) -> None:
        kind = self.query_one("#import-kind", Select).value
        path = self._path_text()
        report = self.query_one("#import-report", Static)
        if not path:
            report.update("Enter a path first.")
            return
        p = Path(path).expanduser()
        if kind == "obsidian" and not p.is_dir():
            report.update(f"{path}: not a folder; a vault is the folder that holds your notes.")
            return
        if kind != "obsidian" and is_dataset_path(p) and p.exists():
            kind = "dataset"  # a Parquet/Arrow file or a dataset folder, whichever file kind was picked
        if kind not in ("obsidian", "dataset") and not p.is_file():
            report.update(f"{path}: no such file.")
            return
        if kind == "dataset" and not p.exists():
            report.update(f"{path}: no such file or folder.")
            return
        self.query_one("#import-start", Button).disabled = True
        if kind == "obsidian" and self.surveyed != path:
            report.update("Surveying the vault…")
            self.run_survey(path, str(p))
            return
        options: dict = {}
        if kind in ("csv", "dataset"):
            options = {"prompt_column": self.query_one("#prompt-column", Input).value.strip() or None,
                       "response_column": self.query_one("#response-column", Input).value.strip() or None}
        if kind == "obsidian":
            options = self._vault_filter()
            if self.query_one("#voice-recipe", Checkbox).value:  # offered now: the dialog may close mid-import
                from forge.train.recipes import RECIPES

                self.app.offer_recipe("voice")
                options["note_tokens"] = RECIPES["voice"].note_tokens  # chunks that fit the recipe's length whole
        report.update("Importing…")
        self.run_import(str(kind), str(p), options)

    def _vault_filter(self) -> dict:
        """The tags and folders picked, as run_extract's options (remembered for this vault by run_extract)."""
        if self.query_one("#all-notes", Checkbox).value:
            flt: dict = {"all_notes": True}
        else:
            flt = {"tags": list(self.query_one("#survey-tags", SelectionList).selected)}
        folders = self.query_one("#survey-folders", SelectionList)
        unpicked = [f for f in self._folder_names if f not in folders.selected]
        if unpicked:
            flt["exclude_folders"] = unpicked
        if not flt.get("tags") and not flt.get("all_notes") and not unpicked:
            flt = {}  # nothing picked: config.json's tags, and the hint says what the vault has
        return flt

    # ---- survey ---------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="import")
    def run_survey(self, shown_path: str, path: str) -> None:
        from forge.data.extract.obsidian import survey_vault

        try:
            survey = survey_vault(path, self.app.config.extract.obsidian, self.app.config.extract.max_file_bytes,
                                  lambda d, t: self.post_message(ImportProgressed(d, t)))
            remembered = self.app.store.source_options("obsidian", str(Path(path).resolve()))
        except Exception as e:  # noqa: BLE001 - a bad folder must never take the app down
            self.post_message(ImportFailed(f"{shown_path}: {e}"))
            return
        self.post_message(VaultSurveyed(shown_path, survey, remembered))

    def on_vault_surveyed(self, message: VaultSurveyed) -> None:
        survey, remembered = message.survey, message.remembered or {}
        cfg_tags = [t.lower() for t in self.app.config.extract.obsidian.include_tags]
        tags = survey.get("tags", [])[:60]
        want = [t.lower().lstrip("#") for t in remembered.get("tags", [])] if remembered.get("tags") else cfg_tags
        tag_list = self.query_one("#survey-tags", SelectionList)
        tag_list.clear_options()
        tag_list.add_options([(f"#{t} ({n})", t, any(t == w or t.startswith(w + "/") for w in want))
                              for t, n in tags])
        self._folder_names = [f for f, _ in survey.get("folders", []) if f != "(top)"]
        excluded = {f.lower() for f in remembered.get("exclude_folders", [])}
        included = {f.lower() for f in remembered.get("folders", [])}
        folder_list = self.query_one("#survey-folders", SelectionList)
        folder_list.clear_options()
        folder_list.add_options([(f"{f}/ ({n})", f, f.lower() not in excluded and (not included or f.lower() in included))
                                 for f, n in survey.get("folders", []) if f != "(top)"])
        all_notes = self.query_one("#all-notes", Checkbox)
        matching = sum(n for t, n in tags if any(t == w or t.startswith(w + "/") for w in want))
        # None of the wanted tags is here (and no earlier choice for this vault says otherwise): Import would take
        # nothing, so every note is pre-checked and the summary says how to narrow it.
        none_wanted = bool(tags) and not matching and not remembered
        all_notes.value = (bool(remembered.get("all_notes")) or (not tags and survey.get("notes", 0) > 0)
                           or none_wanted)
        origin = "your choice for this vault last time" if remembered else "config.json's tags"
        summary = (f"{survey.get('notes', 0)} notes in {len(self._folder_names)} folders · "
                   f"{len(survey.get('tags', []))} tags. Pre-selected: {origin}.")
        if none_wanted:
            summary += (f"\n[b]None of {', '.join('#' + t for t in want) or 'the configured tags'} is in this vault,"
                        f" so All notes is checked: uncheck it and pick tags below to take only some.[/b]")
        elif tags and not matching and not all_notes.value:
            summary += (f"\n[b]None of {', '.join('#' + t for t in want) or 'the configured tags'} is in this vault:"
                        f" pick tags below or check All notes.[/b]")
        elif not tags:
            summary += "\nThe notes carry no tags: every note will be taken."
        self.query_one("#survey-summary", Static).update(summary)
        self.query_one("#vault-survey").display = True
        self.surveyed = message.path
        button = self.query_one("#import-start", Button)
        button.label, button.disabled = "Import", False
        self.query_one("#import-report", Static).update("Pick tags and folders, then Import.")

    # ---- import ---------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="import")
    def run_import(self, kind: str, path: str, options: dict) -> None:
        try:
            result = run_extract(self.app.store, kind, path, self.app.config,
                                 lambda d, t: self.post_message(ImportProgressed(d, t)), controls="dialog", **options)
        except Exception as e:  # noqa: BLE001 - a bad file must never take the app down
            self.post_message(ImportFailed(f"{path}: {e}"))
            return
        self.post_message(ExamplesImported(result))

    def on_import_progressed(self, message: ImportProgressed) -> None:
        self.query_one("#import-progress", ProgressBar).update(total=message.total, progress=message.done)

    def on_import_failed(self, message: ImportFailed) -> None:
        self.query_one("#import-report", Static).update(f"[red]Import failed:[/] {message.error}")
        self.query_one("#import-start", Button).disabled = False

    def on_examples_imported(self, message: ExamplesImported) -> None:
        lines = report_lines(message.report)
        vault = "survey" in message.report  # a vault import: the person's own writing
        if vault and self.query_one("#voice-recipe", Checkbox).value:
            lines.append("The Train form (F4) now starts from the voice recipe (forge/train/recipes.py).")
        self.query_one("#import-report", Static).update("\n".join(lines))
        self.query_one("#import-start", Button).disabled = False
        self.result = message.report

