"""Models mode: the registry lists the bundled base, and Export runs every stage with progress."""

import pytest
from textual.widgets import DataTable, Select

from tests.tui.helpers import wait_until
from tui.app import make_app
from tui.screens.models import ModelsScreen


@pytest.mark.slow
async def test_models_mode_lists_and_exports_a_run(trained_workspace):
    store, config, run_id, _ = trained_workspace
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f5")
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        models = screen.query_one("#model-table", DataTable)
        assert "base" in [str(models.get_row_at(i)[0]) for i in range(models.row_count)]
        runs = screen.query_one("#export-runs", DataTable)
        assert str(runs.get_row_at(0)[0]) == run_id
        screen.query_one("#export-quant", Select).value = "q8_0"
        before = len(store.models())
        await pilot.press("ctrl+e")
        assert await wait_until(pilot, lambda: len(store.models()) == before + 1, seconds=300, step=0.2)
        await screen.workers.wait_for_complete()
        await pilot.pause()
        assert "exported" in str(screen.query_one("#export-status").render())
        assert screen.query_one("#export-progress").progress == 5
        ids = [str(models.get_row_at(i)[0]) for i in range(models.row_count)]
        assert any(i.startswith(run_id) and i.endswith("q8_0") for i in ids)
