"""Train mode's base select (issue 27): it lists the registry's bases as "id · arch · size" (the bundled SmolLM2,
Gemma 3 270M when its package is installed, a workspace's own), selects the spec's base, keeps a base that is not
registered (a folder path from train_defaults or a run) as an option, and the base picked is the one Start uses."""

import json

from textual.widgets import Select, Static

from forge.models import bases
from tests.tui.test_train_preferences import add_run
from tui.app import make_app
from tui.screens.train import base_options


def started_specs(screen) -> list:
    """Make Start record the spec it would launch instead of creating a run."""
    specs: list = []
    screen.start_run = specs.append
    return specs


async def test_base_select_lists_the_registry_and_picking_gemma_is_what_start_uses(store, config):
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        select = screen.query_one("#spec-base_model", Select)
        values = [v for _, v in screen.base_choices]
        assert values[0] == bases.DEFAULT_BASE and select.value == bases.DEFAULT_BASE
        assert ("smollm2-135m-instruct · llama · 135M", bases.DEFAULT_BASE) in screen.base_choices
        assert screen.read_spec().base_model == bases.DEFAULT_BASE
        if not bases.gemma_available():
            assert bases.GEMMA3_270M not in values
            return
        assert ("gemma3-270m · gemma3 · 270M", bases.GEMMA3_270M) in screen.base_choices
        select.value = bases.GEMMA3_270M
        await pilot.pause()
        assert screen.read_spec().base_model == bases.GEMMA3_270M
        specs = started_specs(screen)
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert [s.base_model for s in specs] == [bases.GEMMA3_270M]


async def test_a_base_that_is_not_registered_is_an_option_and_a_runs_base_is_taken(store, config, tmp_path):
    add_run(store, config, "run-on-folder", "completed", base="/models/old-base")
    app = make_app(config, store, train_defaults={"base_model": "/models/typed-in-config"})
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        select = screen.query_one("#spec-base_model", Select)
        assert select.value == "/models/typed-in-config"
        assert screen.base_choices[-1] == ("/models/typed-in-config · not registered", "/models/typed-in-config")
        assert screen.read_spec().base_model == "/models/typed-in-config"

        select.value = bases.DEFAULT_BASE
        screen.query_one("#spec-from-run", Select).value = "run-on-folder"
        await pilot.pause()  # an adapter fits only its own base: the select takes it, added as an option
        assert select.value == "/models/old-base"
        assert ("/models/old-base · not registered", "/models/old-base") in screen.base_choices
        assert screen.read_spec().base_model == "/models/old-base"

        # a base added with `forge models add-base` while the app runs is offered once the screen is shown again
        folder = tmp_path / "my-base"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "max_position_embeddings": 4096}))
        (folder / "chat_template.jinja").write_text("{{ messages }}")
        bases.add_base(config.workspace_path(), "my-base", str(folder))
        await pilot.press("f2")
        await pilot.press("f4")
        await pilot.pause()
        assert ("my-base · qwen2 · ?", "my-base") in screen.base_choices
        assert select.value == "/models/old-base"  # the choice made is kept
        select.value = "my-base"
        assert screen.read_spec().base_model == "my-base"


async def test_config_bases_are_offered_and_reach_the_workspace_registry(store, config, tmp_path):
    from forge.config import BaseSourceConfig

    folder = tmp_path / "cfg-base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    config.bases = {"from-config": BaseSourceConfig(source=str(folder))}
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        assert ("from-config · llama · ?", "from-config") in app.screen.base_choices
    assert bases.get_base("from-config", config.workspace_path()) is not None  # where the runner looks


async def test_a_broken_workspace_registry_still_offers_the_built_in_bases(store, config):
    ws = config.workspace_path()
    ws.mkdir(parents=True, exist_ok=True)
    (ws / bases.REGISTRY_FILE).write_text("{not json")
    options, problem = base_options(config, bases.DEFAULT_BASE)
    assert options[0][1] == bases.DEFAULT_BASE and "bases.json" in problem
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        await pilot.pause()
        screen = app.screen
        assert screen.query_one("#spec-base_model", Select).value == bases.DEFAULT_BASE
        assert "bases.json" in str(screen.query_one("#spec-error", Static).render())


async def test_a_recipe_with_defaults_for_a_base_fills_the_form_with_them_when_that_base_is_picked(store, config,
                                                                                                 monkeypatch):
    """A recipe may differ per base (measured there): picking the base refills the form from the recipe's defaults
    for it, picking the bundled one again brings the recipe's own back, and Start uses what the form shows."""
    import dataclasses

    from textual.widgets import Input

    from forge.train import recipes

    other = "/models/other-base"
    patched = dataclasses.replace(recipes.RECIPES["summaries"], per_base={other: {"learning_rate": 1e-4,
                                                                                   "epochs": 3.0}})
    monkeypatch.setitem(recipes.RECIPES, "summaries", patched)
    assert recipes.recipe_spec("summaries", other)["learning_rate"] == 1e-4
    assert recipes.recipe_spec("summaries")["learning_rate"] == 5e-4
    app = make_app(config, store, train_defaults={"base_model": other})
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        lr, epochs = screen.query_one("#spec-learning_rate", Input), screen.query_one("#spec-epochs", Input)
        screen.query_one("#spec-recipe", Select).value = "summaries"
        await pilot.pause()
        assert (lr.value, epochs.value) == ("0.0001", "3.0")
        screen.query_one("#spec-base_model", Select).value = bases.DEFAULT_BASE
        await pilot.pause()
        assert (lr.value, epochs.value) == ("0.0005", "2.0")
        screen.query_one("#spec-base_model", Select).value = other
        await pilot.pause()
        spec = screen.read_spec()
        assert (spec.base_model, spec.learning_rate, spec.epochs, spec.recipe) == (other, 1e-4, 3.0, "summaries")
