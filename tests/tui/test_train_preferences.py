"""Train mode and preference training (issue 26): the method / β / start-from-run fields feed the spec Start uses,
a preference run without data is refused with what to do, the line under the form counts pairs and KTO labels by
source (refreshed when the screen is shown again), and a DPO run's reward margin is charted and in the stats."""

import json
import time
from pathlib import Path

from textual.widgets import Input, Label, RichLog, Select

from tests.tui.helpers import wait_until
from tests.tui.test_train_screen import fake_launcher
from tui.app import make_app
from tui.screens.train import NO_LABELS, NO_PAIRS, start_refusal
from tui.widgets.loss_chart import LossChart


def text_of(screen, selector) -> str:
    return str(screen.query_one(selector).render())


def ingest_answers(store, pairs, kind="jsonl"):
    store.ingest([{"extract_key": f"{kind}-{i}", "source_kind": kind, "source_ref": f"rows.{kind}", "tags": [],
                   "messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]}
                  for i, (u, a) in enumerate(pairs)])
    return store.ids()


def add_run(store, config, run_id, status, method="sft", adapter=True, base="smollm2-135m-instruct"):
    """A run as the store and its folder hold it after the runner ended (adapter/ with its completion marker)."""
    run_dir = config.workspace_path() / "runs" / run_id
    run_dir.mkdir(parents=True)
    if adapter:
        (run_dir / "adapter").mkdir()
        (run_dir / "adapter" / "forge_complete.json").write_text(json.dumps({"step": 2}))
    (run_dir / "status.json").write_text(json.dumps({"status": status}))
    store.create_run(run_id, str(run_dir), {"method": method, "base_model": base}, {})
    store.update_run(run_id, status, {"step": 2})
    time.sleep(0.01)  # created_at has millisecond resolution: keep "newest first" unambiguous
    return run_dir


async def test_method_beta_and_from_run_feed_the_spec(store, config):
    add_run(store, config, "run-old-sft", "completed", base="/models/old-base")
    add_run(store, config, "run-failed", "failed")
    add_run(store, config, "run-no-adapter", "completed", adapter=False)
    add_run(store, config, "run-stopped-dpo", "stopped", method="dpo")
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        method = screen.query_one("#spec-method", Select)
        from_run = screen.query_one("#spec-from-run", Select)
        beta = screen.query_one("#spec-beta", Input)
        assert method.value == "sft" and from_run.value == Select.NULL and beta.disabled
        spec = screen.read_spec()
        assert spec.method == "sft" and spec.from_run is None and spec.beta == 0.1

        # finished runs with an adapter, newest first, each with its method; failed or adapter-less runs are not
        assert screen.from_run_options == [("stopped-dpo · dpo", "run-stopped-dpo"),
                                           ("old-sft · sft", "run-old-sft")]

        method.value = "dpo"
        await pilot.pause()
        assert not beta.disabled
        beta.value = "0.25"
        from_run.value = "run-old-sft"
        await pilot.pause()
        # an adapter fits only the base it was trained on: the form takes that run's base model
        assert screen.query_one("#spec-base_model", Select).value == "/models/old-base"
        spec = screen.read_spec()
        assert (spec.method, spec.from_run, spec.beta, spec.base_model) == ("dpo", "run-old-sft", 0.25,
                                                                              "/models/old-base")

        method.value = "kto"
        from_run.clear()
        await pilot.pause()
        spec = screen.read_spec()
        assert spec.method == "kto" and spec.from_run is None

        beta.value = "-1"
        assert screen.read_spec() is None and "beta" in text_of(screen, "#spec-error")

        # a run that finishes later is offered once the screen is shown again; the choice made is kept
        beta.value = "0.1"
        from_run.value = "run-stopped-dpo"
        await pilot.press("f2")
        add_run(store, config, "run-new", "completed")
        await pilot.press("f4")
        await pilot.pause()
        assert [v for _, v in screen.from_run_options] == ["run-new", "run-stopped-dpo", "run-old-sft"]
        assert from_run.value == "run-stopped-dpo"


async def test_dpo_without_pairs_is_refused_with_what_to_do(sample_store, config):
    for i in sample_store.ids()[:6]:
        sample_store.set_status(i, "approved")  # vault notes: approved, yet no pair among them
    app = make_app(config, sample_store, train_launcher=fake_launcher(3, 0.005))
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        screen.query_one("#spec-method", Select).value = "dpo"
        await pilot.pause()
        await pilot.press("ctrl+t")
        assert await wait_until(pilot, lambda: "no preference pairs yet" in text_of(screen, "#spec-error"))
        error = text_of(screen, "#spec-error")
        assert "edit machine-written answers in Curate" in error and "vote in Eval" in error
        assert "import a preference dataset" in error
        assert sample_store.runs() == [] and screen.proc is None
        assert "measuring" not in text_of(screen, "#train-lengths")


def test_refusals_name_what_is_missing():
    empty = {"pairs": {}, "pairs_total": 0, "labels": {"desirable": 0, "undesirable": 0}}
    assert start_refusal("dpo", empty) == NO_PAIRS and start_refusal("kto", empty) == NO_LABELS
    assert start_refusal("sft", empty) is None
    some = {**empty, "pairs_total": 1, "labels": {"desirable": 2, "undesirable": 0}}
    assert start_refusal("dpo", some) is None and start_refusal("kto", some) is None


async def test_counts_line_shows_pairs_by_source_and_refreshes_when_shown(store, config):
    ids = ingest_answers(store, [("what is 2+2?", "It's 4, I think."), ("capital of France?", "Paris.")])
    for i in ids:
        store.set_status(i, "approved")
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        assert await wait_until(pilot, lambda: "preference pair" in text_of(screen, "#train-prefs"))
        assert text_of(screen, "#train-prefs").startswith("0 preference pairs · KTO 2 good / 0 bad")

        await pilot.press("f2")  # meanwhile, in Curate: the machine-written answer is corrected
        ex = store.get(ids[0])
        store.edit(ids[0], ex.messages[:-1] + [{"role": "assistant", "content": "4."}])
        store.set_status(ids[0], "approved")
        await pilot.press("f4")
        assert await wait_until(pilot, lambda: "1 preference pair (edit 1)" in text_of(screen, "#train-prefs"))
        await app.workers.wait_for_complete()
        assert screen.pref_counts["pairs"]["edit"] == 1 and screen.pref_counts["pairs_total"] == 1


def write_events(run_dir: Path, events: list[dict]) -> None:
    with open(run_dir / "events.jsonl", "a") as f:
        for e in events:
            f.write(json.dumps({"time": 0, **e}) + "\n")


async def test_dpo_run_charts_the_reward_margin_and_the_stats_show_it(store, config):
    run_dir = add_run(store, config, "run-dpo", "running", method="dpo", adapter=False)
    write_events(run_dir, [{"event": "status", "status": "running", "max_steps": 4}] + [
        {"event": "log", "step": s, "loss": 0.69 - 0.1 * s, "lr": 1e-4, "tokens_per_s": 90.0, "max_steps": 4,
         "rewards_margin": 0.2 * s, "rewards_chosen": 0.1 * s, "rewards_rejected": -0.1 * s,
         "rewards_accuracy": 0.25 * s} for s in range(1, 5)] + [
        {"event": "eval", "step": 4, "eval_loss": 0.4, "eval_rewards_margin": 0.7}])
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        screen.follow("run-dpo", run_dir, None)
        chart = screen.query_one(LossChart)
        assert await wait_until(pilot, lambda: len(chart.train_points) == 4)
        assert chart.legend == ["train", "eval", "reward margin", "chosen reward", "rejected reward"]
        assert [round(v, 3) for _, v in chart.reward_points["rewards_margin"]] == [0.2, 0.4, 0.6, 0.8]
        await pilot.pause()
        drawn = str(chart.render())
        assert "reward margin" in drawn and "train" in drawn
        stats = text_of(screen, "#train-stats")
        assert "step 4/4" in stats and "margin 0.800" in stats and "acc 100%" in stats
        log = "\n".join(str(line.text) for line in screen.query_one("#train-log", RichLog).lines)
        assert "eval loss 0.4000 · reward margin 0.700" in log


async def test_sft_run_looks_as_before(store, config):
    run_dir = add_run(store, config, "run-sft", "running", adapter=False)
    write_events(run_dir, [{"event": "log", "step": s, "loss": 2.0 - 0.1 * s, "tokens_per_s": 90.0,
                            "max_steps": 3} for s in range(1, 4)] + [{"event": "eval", "step": 3, "eval_loss": 1.8}])
    app = make_app(config, store)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        screen.follow("run-sft", run_dir, None)
        chart = screen.query_one(LossChart)
        assert await wait_until(pilot, lambda: len(chart.train_points) == 3)
        assert chart.legend == ["train", "eval"] and chart.reward_points == {}
        await pilot.pause()
        assert "reward" not in str(chart.render())
        stats = str(screen.query_one("#train-stats", Label).render())
        assert "step 3/3" in stats and "margin" not in stats and "acc" not in stats


async def test_a_dpo_run_starts_from_the_form_with_its_method_and_start_run(store, config):
    """With a pair in the store, Start creates a dpo run on top of the chosen run (the runner is the fake one)."""
    ids = ingest_answers(store, [(f"question {i}?", f"Sure! Here is answer {i}.") for i in range(6)])
    for i in ids:
        store.set_status(i, "approved")
    ex = store.get(ids[0])
    store.edit(ids[0], ex.messages[:-1] + [{"role": "assistant", "content": "Answer 0."}])
    run_dir = add_run(store, config, "run-sft-base", "completed")
    (run_dir / "adapter" / "adapter_config.json").write_text("{}")
    app = make_app(config, store, train_launcher=fake_launcher(3, 0.005))
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.press("f4")
        screen = app.screen
        screen.query_one("#spec-method", Select).value = "dpo"
        screen.query_one("#spec-from-run", Select).value = "run-sft-base"
        await pilot.pause()
        await pilot.press("ctrl+t")
        assert await wait_until(pilot, lambda: screen.run_id not in (None, "run-sft-base") and screen.proc is None,
                                seconds=60), text_of(screen, "#spec-error")
        spec = store.get_run(screen.run_id)["spec"]
        assert spec["method"] == "dpo" and spec["from_run"] == "run-sft-base" and spec["beta"] == 0.1
        assert "exporting" not in text_of(screen, "#train-lengths")
        assert "3/3" in text_of(screen, "#train-stats")
        # the run history says what each run trained and where it started
        from textual.widgets import DataTable

        history = screen.query_one("#run-history", DataTable)
        assert await wait_until(pilot, lambda: screen.run_id in history.rows, seconds=10)
        row = [str(c) for c in history.get_row(screen.run_id)]
        assert row[2] == "dpo ← run-sft-base" and row[3] == "smollm2-135m-instruct"
        assert [str(c) for c in history.get_row("run-sft-base")][2] == "sft"
