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


async def test_adapters_are_listed_under_their_base_and_selected_by_id(config, store):
    """An adapter row sits right under its base, marked as such; selecting it yields its registry id."""
    from forge.models.export import register_bundled_base

    register_bundled_base(store, config)
    models = config.workspace_path() / "models"
    (models / "tuned-lora").mkdir(parents=True)
    (models / "tuned-lora" / "tuned-lora.gguf").write_bytes(b"GGUF")
    store.register_model({"id": "tuned-lora", "name": "tuned", "path": str(models / "tuned-lora" / "tuned-lora.gguf"),
                          "quant": "f32", "bytes": 4, "meta": {"kind": "adapter", "base_id": "base"}},
                         models_dir=models)
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f5")
        screen = app.screen
        table = screen.query_one("#model-table", DataTable)
        rows = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        at = next(i for i, r in enumerate(rows) if r[0] == "base")
        assert rows[at + 1][0] == "  └ tuned-lora" and rows[at + 1][1] == "LoRA of base"
        table.move_cursor(row=at + 1)
        await pilot.pause()
        assert screen.selected_model() == "tuned-lora"
