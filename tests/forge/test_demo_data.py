"""The built-in demo data: a few hundred requests, and a held-out set that shares no task and no time
expression with the training file (so scoring on it means the task was learned, not memorised)."""

import json
import subprocess
import sys

from tests.conftest import REPO

DEMO = REPO / "data" / "demo"


def rows(name):
    return [json.loads(line) for line in (DEMO / name).read_text().splitlines()]


def test_demo_data_is_committed_and_reproducible(tmp_path):
    train, held = rows("reminders.jsonl"), rows("reminders_heldout.jsonl")
    assert len(train) >= 300 and len(held) >= 50
    assert all(set(r) == {"input", "output"} and r["output"].count(" | ") == 1 for r in train + held)
    for r in train + held:  # the answer copies spans of the request
        task, when = r["output"].split(" | ")
        assert task in r["input"].lower() and when in r["input"].lower()
    before = (DEMO / "reminders.jsonl").read_bytes()
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_demo_data.py")], check=True, capture_output=True)
    assert (DEMO / "reminders.jsonl").read_bytes() == before


def test_held_out_tasks_and_times_never_occur_in_training():
    train, held = rows("reminders.jsonl"), rows("reminders_heldout.jsonl")
    parts = lambda rs, i: {r["output"].split(" | ")[i] for r in rs}  # noqa: E731
    assert not parts(train, 0) & parts(held, 0)
    assert not parts(train, 1) & parts(held, 1)
    assert not {r["input"] for r in train} & {r["input"] for r in held}
