"""Eval mode on stored results: side by side, votes with single keys that persist, win rate, report files.
(Generation itself is exercised for real in tests/forge/test_eval.py.)"""

import json

from rich.console import Console
from textual.widgets import DataTable, Select

from forge import eval as ev
from tui.app import make_app
from tui.screens.eval import EvalScreen


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
        table = screen.query_one("#eval-summary", DataTable)
        assert [str(c) for c in table.get_row_at(0)] == ["exact_match", "0.667", "0.000"]
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
        assert "| exact_match | 0.667 | 0.000 |" in md
