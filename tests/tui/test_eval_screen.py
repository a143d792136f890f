"""Eval mode on stored results: side by side, votes with single keys that persist, win rate, report files.
(Generation itself is exercised for real in tests/forge/eval/test_eval.py.)"""

import json

from rich.console import Console
from textual.widgets import DataTable, Input, Select
from textual.widgets.select import InvalidSelectValueError

from forge import eval as ev
from tui.app import make_app
from tui.screens.eval import EvalScreen
from tests.tui.helpers import wait_until


def text_of(static) -> str:
    console = Console(width=80, record=True, file=open("/dev/null", "w"))
    console.print(static.content)
    return console.export_text()


def seed(store, config):
    models = config.workspace_path() / "models"
    for mid in ("base", "tuned-q4"):
        (models / mid).mkdir(parents=True, exist_ok=True)
        (models / mid / "m.gguf").write_bytes(b"GGUF")
        store.register_model({"id": mid, "name": mid, "path": str(models / mid / "m.gguf"), "quant": "q4_k_m"},
                             models_dir=models)
    prompts = [("remind me to call mom at 5", "call mom | at 5"), ("ping me tonight to stretch", "stretch | tonight"),
               ("gotta pay rent on the 1st", "pay rent | on the 1st")]
    tuned = ["call mom | at 5", "stretch | tonight", "pay rent | 1st"]
    base = ["Sure! I will remind you.", "I'm sorry, I can't.", "Okay."]
    for mid, outs in (("tuned-q4", tuned), ("base", base)):
        recs = [{"prompt": p, "expected": e, "output": o, "error": None, "latency_ms": 100.0, "completion_tokens": 4}
                for (p, e), o in zip(prompts, outs)]
        store.save_eval(mid, "held.jsonl:abc", ev.summarize(recs), recs)


async def test_side_by_side_votes_win_rate_and_report(store, config):
    seed(store, config)
    app = make_app(config, store)
    async with app.run_test(size=(150, 45)) as pilot:
        await pilot.press("f7")
        screen = app.screen
        assert isinstance(screen, EvalScreen)
        assert screen.query_one("#eval-model", Select).value == "tuned-q4"
        await app.workers.wait_for_complete()
        await pilot.pause()
        table = screen.query_one("#eval-summary", DataTable)
        assert [str(c) for c in table.get_row_at(0)] == ["exact_match", "0.667", "0.000", "+0.667 (+0.000 … +1.000)"]
        verdict = " ".join(text_of(screen.query_one("#eval-verdict")).split())
        assert "tuned vs base on exact match: +0.667 (95 % CI +0.000 … +1.000), not significant" in verdict
        assert "lead-" not in verdict  # short answers: no extractive baseline
        shown = text_of(screen.query_one("#side-model"))
        assert "tuned-q4 ✓" in shown and "call mom | at 5" in shown
        assert "Sure! I will remind you." in text_of(screen.query_one("#side-baseline"))
        await pilot.press("t", "b", "equals_sign")
        votes = store.votes("tuned-q4", "base", "held.jsonl:abc")
        assert votes == {0: "model", 1: "baseline", 2: "tie"}
        assert "win rate 0.50" in str(screen.query_one("#eval-votes").render())
        await pilot.press("k", "t")  # back to prompt 2 and change its vote: replaced, not added
        assert store.votes("tuned-q4", "base", "held.jsonl:abc")[1] == "model"
        await pilot.press("x")
        report = json.loads((config.workspace_path() / "exports" / "eval-tuned-q4-vs-base.json").read_text())
        assert report["votes"]["win_rate"] == (2 + 0.5) / 3 and len(report["prompts"]) == 3
        md = (config.workspace_path() / "exports" / "eval-tuned-q4-vs-base.md").read_text()
        assert "| exact_match | 0.667 | 0.000 | +0.667 (+0.000 … +1.000) |" in md
        assert "- tuned vs base on exact match: +0.667" in md


def seed_summaries(store, config, forgetting: dict) -> None:
    """A tuned model from a run whose meta carries the forgetting check, evaluated on dialogue summaries."""
    run_dir = config.workspace_path() / "runs" / "run-1"
    run_dir.mkdir(parents=True)
    store.create_run("run-1", str(run_dir), {}, {})
    store.update_run("run-1", "completed", {"forgetting": forgetting})
    models = config.workspace_path() / "models"
    for mid, run in (("base", None), ("tuned", "run-1")):
        (models / mid).mkdir(parents=True, exist_ok=True)
        (models / mid / "m.gguf").write_bytes(b"GGUF")
        store.register_model({"id": mid, "name": mid, "path": str(models / mid / "m.gguf"), "run_id": run},
                             models_dir=models)
    dialogues = [("Summarize:\nAnna: Are we still on for lunch at noon?\nBen: Yes, the usual place.\nAnna: Great.",
                  "Anna and Ben confirm their lunch at noon at the usual place."),
                 ("Summarize:\nTom: My train is delayed by an hour.\nEve: I will push the meeting to three.\n"
                  "Tom: Thanks.",
                  "Tom's train is late, so Eve moves the meeting to three o'clock."),
                 ("Summarize:\nMia: Did you feed the cat this morning?\nLeo: No, I forgot, sorry.\nMia: I'll do it.",
                  "Leo forgot to feed the cat this morning, so Mia will do it.")]
    outs = {"tuned": [e for _, e in dialogues], "base": ["Sure, here is a summary.", "I cannot help.", "Okay."]}
    info = {"eval": {"baselines": "auto", "max_tokens": 40, "leaks": {"checked": True, "found": 1, "excluded": 1,
                                                                     "kept": False, "threshold": 0.8}}}
    for mid, o in outs.items():
        recs = [{"prompt": p, "expected": e, "output": out, "error": None, "latency_ms": 90.0, "completion_tokens": 9}
                for (p, e), out in zip(dialogues, o)]
        store.save_eval(mid, "dialogues.jsonl:abc", {**ev.summarize(recs), **info}, recs)


async def test_summary_shows_lead_baseline_intervals_leaks_and_forgetting_warning(store, config):
    seed_summaries(store, config, {"n": 20, "loss_before": 2.1, "loss_after": 2.9, "change": 0.8, "warn": True,
                                   "threshold": 0.25})
    app = make_app(config, store)
    async with app.run_test(size=(180, 50)) as pilot:
        await pilot.press("f7")
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("#eval-summary", DataTable)
        header = [str(c.label) for c in table.columns.values()]
        # summaries of ~13 words over dialogue lines of ~6: the first two lines
        assert header[:4] == ["metric", "tuned", "base", "lead-2"] and header[-1] == "tuned − lead-2 (95 % CI)"
        rouge = [str(c) for c in table.get_row_at(1)]
        assert rouge[0] == "rouge_l" and rouge[1] == "1.000" and rouge[-1].endswith("*")  # beats lead-1, surely
        verdict = " ".join(text_of(screen.query_one("#eval-verdict")).split())
        assert "tuned beats base on ROUGE-L by +1.000" in verdict and "tuned beats lead-2 on ROUGE-L by +" in verdict
        assert "1 of 4 held-out prompts have a near-duplicate" in verdict and "excluded" in verdict
        assert "forgetting: loss on the general reference set 2.100 → 2.900" in verdict and "WARNING" in verdict


async def test_a_model_from_a_run_offers_the_held_out_notes_of_its_run(store, config):
    """The held-out set may be the run's own held-out notes (`forge eval --run`), no file; other models take a file."""
    seed_summaries(store, config, {"n": 20, "loss_before": 2.1, "loss_after": 2.0, "change": -0.1, "warn": False,
                                   "threshold": 0.25})
    data = config.workspace_path() / "runs" / "run-1" / "data"
    data.mkdir()
    for name in ("train", "val", "test"):  # a run too small to hold anything out
        (data / f"{name}.jsonl").write_text("")
    models = config.workspace_path() / "models"
    (models / "other").mkdir()
    (models / "other" / "m.gguf").write_bytes(b"GGUF")
    store.register_model({"id": "other", "name": "other", "path": str(models / "other" / "m.gguf")}, models_dir=models)
    app = make_app(config, store)
    async with app.run_test(size=(180, 50)) as pilot:
        await pilot.press("f7")
        await app.workers.wait_for_complete()
        screen = app.screen
        model, pick = screen.query_one("#eval-model", Select), screen.query_one("#eval-heldout", Select)
        field = screen.query_one("#eval-file", Input)
        model.value = "tuned"
        await pilot.pause()
        assert pick.display and pick.value == "run" and not field.display
        assert [str(label) for label, _ in pick._options if str(label)][:1] == ["held-out notes of run run-1"]
        await pilot.press("ctrl+g")  # the run's held-out split is taken, not the file in the field
        status = screen.query_one("#eval-status")
        assert await wait_until(pilot, lambda: "run run-1 holds out nothing" in str(status.render()), 20), \
            str(status.render())
        pick.value = "file"
        await pilot.pause()
        assert field.display
        model.value = "other"  # not from a run: the file only
        await pilot.pause()
        assert not pick.display and field.display


async def test_an_eval_that_judged_the_voice_shows_its_panel(store, config):
    """An eval stored with the voice judge's result (the person's notes held out) shows the voice panel: the
    summary in words and the profile table; an eval without it shows no panel."""
    from pathlib import Path

    from forge.eval.voice import judge

    seed(store, config)
    person = [line for line in (Path(__file__).resolve().parents[1] / "data" / "voice" / "person.txt")
              .read_text(encoding="utf-8").split("\n\n") if line.strip()][:12]
    outs = {"tuned": [p.upper() for p in person], "base": ["I am an AI assistant. How can I help you today?"] * 12}
    voice = {**judge(person, outs, training_texts=person[:6]), "names": {"tuned": "tuned-q4", "base": "base"}}
    recs = {mid: [{"prompt": f"note {i}", "expected": e, "output": o, "error": None, "latency_ms": 1.0,
                   "completion_tokens": 3} for i, (e, o) in enumerate(zip(person, outs[key]))]
            for mid, key in (("tuned-q4", "tuned"), ("base", "base"))}
    store.save_eval("base", "notes.jsonl:v", ev.summarize(recs["base"]), recs["base"])
    store.save_eval("tuned-q4", "notes.jsonl:v", {**ev.summarize(recs["tuned-q4"]), "voice": voice}, recs["tuned-q4"])
    app = make_app(config, store)
    async with app.run_test(size=(150, 60)) as pilot:
        await pilot.press("f7")
        screen = app.screen
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.query_one("#eval-voice-box").display
        panel = " ".join(text_of(screen.query_one("#eval-voice")).split())
        assert "A style classifier tells the tuned model's answers from yours" in panel
        assert "words per answer" in panel and "loops" in panel
        table = screen.query_one("#eval-summary", DataTable)
        assert all(str(table.get_row_at(i)[0]) != "voice" for i in range(table.row_count))


def pick(select: Select, value: str) -> bool:
    """Choose value in select if it is one of its options yet."""
    try:
        select.value = value
    except InvalidSelectValueError:
        return False
    return True


async def test_a_model_of_another_base_is_shown_beside_its_own_base_labelled_base(store, config):
    """A Gemma adapter evaluated against `base` was compared with Gemma's own GGUF: that side reads `base ·
    gemma3-270m`, not `baseline`, as the bundled base's side reads `base · base`."""
    models = config.workspace_path() / "models"
    for mid, meta in (("gemma3-270m", {}), ("g-lora", {"kind": "adapter", "base_id": "gemma3-270m"})):
        (models / mid).mkdir(parents=True, exist_ok=True)
        (models / mid / "m.gguf").write_bytes(b"GGUF")
        store.register_model({"id": mid, "name": mid, "path": str(models / mid / "m.gguf"), "quant": "q4_k_m",
                              "meta": meta}, models_dir=models)
    for mid, out in (("g-lora", "call mom | at 5"), ("gemma3-270m", "remind me to call mom at 5 and")):
        recs = [{"prompt": "remind me to call mom at 5", "expected": "call mom | at 5", "output": out,
                 "error": None, "latency_ms": 100.0, "completion_tokens": 4}]
        store.save_eval(mid, "held.jsonl:abc", ev.summarize(recs), recs)
    app = make_app(config, store)
    async with app.run_test(size=(150, 45)) as pilot:
        await pilot.press("f7")
        screen = app.screen
        screen.query_one("#eval-model", Select).value = "g-lora"
        # `base` is a choice once the bundled base is registered, which the mode does in a worker on first visit
        assert await wait_until(pilot, lambda: pick(screen.query_one("#eval-baseline", Select), "base"), 120)
        assert await wait_until(pilot, lambda: "and" in text_of(screen.query_one("#side-baseline")), 10)
        shown = text_of(screen.query_one("#side-baseline"))
        assert "base · gemma3-270m" in shown and "baseline" not in shown
