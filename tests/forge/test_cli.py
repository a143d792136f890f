"""The CLI as a script would use it: a real `forge` process, --json output parsed."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO, SAMPLE_VAULT


def forge(ws, *args, check=True, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}
    p = subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), *args],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def js(p):
    return json.loads(p.stdout)


def test_extract_list_decide_undo_export(tmp_path):
    ws = tmp_path / "ws"
    r = js(forge(ws, "extract", "obsidian", str(SAMPLE_VAULT), "--json"))
    assert set(r) >= {"added", "updated", "unchanged", "skipped"} and r["added"] >= 30
    assert all(set(s) == {"source", "reason", "code"} for s in r["skipped"])
    assert js(forge(ws, "extract", "obsidian", str(SAMPLE_VAULT), "--json"))["unchanged"] == r["added"]
    rows = js(forge(ws, "list", "--status", "pending", "--json"))
    assert len(rows) == r["added"] and set(rows[0]) >= {"id", "status", "source", "tags", "messages"}
    ids = [str(x["id"]) for x in rows[:5]]
    forge(ws, "approve", *ids[:4], "--json")
    forge(ws, "reject", ids[4], "--json")
    assert js(forge(ws, "undo", "--json"))["example_ids"] == [int(ids[4])]
    assert len(js(forge(ws, "list", "--status", "approved", "--json"))) == 4
    out = js(forge(ws, "dataset", "export", "--out", str(tmp_path / "ds"), "--val", "0.25", "--test", "0.25",
                   "--json"))
    assert (out["train"], out["val"], out["test"]) == (2, 1, 1) and len(out["dataset_hash"]) == 64


def test_csv_and_jsonl_extract(tmp_path):
    ws = tmp_path / "ws"
    (tmp_path / "a.csv").write_text("question,answer\nq,a\n")
    (tmp_path / "b.jsonl").write_text('{"input": "x", "output": "y"}\nnot json\n')
    assert js(forge(ws, "extract", "csv", str(tmp_path / "a.csv"), "--json"))["added"] == 1
    r = js(forge(ws, "extract", "jsonl", str(tmp_path / "b.jsonl"), "--json"))
    assert r["added"] == 1 and r["skipped"][0]["source"].endswith("b.jsonl:2")


def test_user_errors_are_one_line_with_json_error(tmp_path):
    ws = tmp_path / "ws"
    p = forge(ws, "approve", "999", "--json", check=False)
    assert p.returncode == 1 and json.loads(p.stdout) == {"error": "no example with id 999"}
    assert p.stderr.strip() == "forge: error: no example with id 999"
    p = forge(ws, "undo", check=False)
    assert p.returncode == 1 and "nothing to undo" in p.stderr and "Traceback" not in p.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"dataset": {"seed": "x"}}')
    p = subprocess.run([sys.executable, "-m", "forge.cli", "--config", str(bad), "stats"], capture_output=True,
                       text=True, cwd=REPO)
    assert p.returncode == 1 and "dataset.seed" in p.stderr and str(bad) in p.stderr


def test_python_dash_m_forge_and_one_module_per_command_group(tmp_path):
    """`python -m forge` runs the CLI; forge/cli/ is a package whose group modules each register their commands."""
    import importlib

    p = subprocess.run([sys.executable, "-m", "forge", "--workspace", str(tmp_path / "ws"), "stats", "--json"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 0 and json.loads(p.stdout)["total"] == 0, p.stderr
    from forge.cli import main

    owners = {name: cmd.callback.__module__ for name, cmd in main.commands.items() if name != "tui"}
    assert set(owners.values()) == {f"forge.cli.{m}" for m in
                                    ("configure", "curate", "data", "evaluate", "models", "train")}
    assert owners["extract"] == "forge.cli.data" and owners["train"] == "forge.cli.train"
    assert owners["eval"] == "forge.cli.evaluate" and owners["export"] == "forge.cli.models"
    assert importlib.util.find_spec("forge.cli.__main__") is not None


def test_with_json_a_long_command_still_says_how_far_it_is_on_stderr_every_15_s(capsys, monkeypatch):
    """`forge eval --json > out.json` over 200 prompts runs for minutes: stderr gets a plain line every 15 s (and
    the last one), stdout only the JSON; a command done within 15 s writes no line at all."""
    import time

    from forge.cli import _progress_run

    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    def quick(progress):
        progress(1, 2)
        progress(2, 2)
        return "done"

    assert _progress_run("evaluating", True, quick) == "done"
    assert capsys.readouterr() == ("", "")

    def slow(progress):
        for i in range(1, 5):
            clock[0] += 10
            progress(i, 4)
        progress(4, 4)  # said once

    _progress_run("evaluating", True, slow)
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["evaluating: 2/4 (50 %)", "evaluating: 4/4 (100 %)"]
