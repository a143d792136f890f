"""The import dialog takes a dataset file or folder: picked as Dataset, or given where a file kind was picked."""

from textual.widgets import Input, Select

from tests.data.dataset_files import write_all
from tui.app import make_app
from tui.screens.import_dialog import ImportScreen


async def test_import_dialog_reads_a_parquet_file_and_a_save_to_disk_folder(store, config, tmp_path):
    files = write_all(tmp_path / "datasets")
    app = make_app(config, store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("i")
        assert isinstance(app.screen, ImportScreen)
        app.screen.query_one("#import-kind", Select).value = "csv"  # the wrong kind: the path says what it is
        await pilot.pause()
        assert app.screen.query_one("#csv-columns").display
        app.screen.query_one("#import-path", Input).value = str(files["alpaca.parquet"])
        await pilot.click("#import-start")
        await app.screen.workers.wait_for_complete()
        await pilot.pause()
        report = str(app.screen.query_one("#import-report").render())
        assert "read 6 · added 3" in report and "3 empty" in report
        app.screen.query_one("#import-kind", Select).value = "dataset"
        await pilot.pause()
        app.screen.query_one("#import-path", Input).value = str(files["saved_dict"])
        app.screen.query_one("#prompt-column", Input).value = "question"
        app.screen.query_one("#response-column", Input).value = "nope"
        await pilot.click("#import-start")
        await app.screen.workers.wait_for_complete()
        await pilot.pause()
        report = str(app.screen.query_one("#import-report").render())
        assert "no column 'nope'; it has: question, answer, tags" in report
        app.screen.query_one("#response-column", Input).value = "answer"
        await pilot.click("#import-start")
        await app.screen.workers.wait_for_complete()
        await pilot.pause()
        assert "added 3" in str(app.screen.query_one("#import-report").render())
        assert store.counts()["pending"] == 6
