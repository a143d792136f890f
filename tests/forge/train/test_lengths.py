"""Lengths from the data, with the bundled SmolLM2's real tokenizer: auto picks the p98 length, the truncation
policy never cuts an assistant token, drops are counted, recipes change the spec, the reference set reproduces."""

import json
import math
import subprocess
import sys

import pytest

from forge.train.lengths import (MARKER, encode_conversation, fit, folder_chat, hf_chat, percentile, plan,
                                 summary_lines, tokenize)
from forge.train.recipes import RECIPES, recipe_spec
from forge.train.spec import SpecError, TrainSpec
from tests.conftest import REPO


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    """tokenizer.json + chat template of the bundled SmolLM2 (read from its GGUF, no model weights)."""
    from forge.data.tokens import _bundled_copy

    return _bundled_copy(tmp_path_factory.mktemp("tok") / "base-tokenizer").parent


@pytest.fixture(scope="module")
def chat(tok_dir):
    return folder_chat(tok_dir)


def conv(user, answer):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def assistant_tokens(labels):
    return [t for t in labels if t != -100]


def test_auto_picks_the_p98_length(chat):
    convs = [conv("tell me about " + "the weather " * (i % 50 + 1), f"answer {i}") for i in range(200)]
    lengths = sorted(len(encode_conversation(chat, c)[0]) for c in convs)
    p98 = lengths[math.ceil(0.98 * len(lengths)) - 1]
    report = plan(TrainSpec(), convs, chat, context=8192)
    assert report["p98"] == p98 == percentile(lengths, 98)
    assert report["max_seq_len"] == math.ceil(p98 / 32) * 32 and report["max_seq_len"] % 32 == 0
    assert "98 %" in report["reason"] and "multiple of 32" in report["reason"]
    assert report["over"] == sum(n > report["max_seq_len"] for n in lengths) and report["over_share"] <= 0.02
    assert not report["needs_confirm"]  # auto never asks
    assert sum(b["count"] for b in report["histogram"]) == 200
    # over the memory budget, fewer rows per step and more accumulation: the same effective batch, nothing cut
    fewer = plan(TrainSpec(batch_size=4, grad_accum=2, max_tokens_per_batch=report["max_seq_len"] * 2), convs, chat,
                 context=8192)
    assert fewer["max_seq_len"] == report["max_seq_len"] and (fewer["batch_size"], fewer["grad_accum"]) == (2, 4)
    assert "same effective batch of 8" in fewer["reason"]
    # a length over the whole budget is capped by it (one row per step)
    capped = plan(TrainSpec(batch_size=4, max_tokens_per_batch=32), convs, chat, context=8192)
    assert capped["max_seq_len"] == 32 and "memory budget" in capped["reason"]
    assert (capped["batch_size"], capped["grad_accum"]) == (1, 4)
    assert plan(TrainSpec(), convs, chat, context=64)["max_seq_len"] == 64


def test_middle_of_user_never_cuts_the_assistant_turn(chat):
    user = "START " + " ".join(f"word{i}" for i in range(300)) + " END"
    answer = "The summary: word0 through word299, bracketed by START and END."
    whole_ids, whole_labels = encode_conversation(chat, conv(user, answer))
    assert len(whole_ids) > 200
    f = fit(chat, conv(user, answer), 128, "middle-of-user")
    assert f.outcome == "cut" and len(f.input_ids) <= 128
    assert assistant_tokens(f.labels) == assistant_tokens(whole_labels)  # every assistant token, intact
    cut_user = f.messages[0]["content"]
    assert MARKER.strip() in cut_user and cut_user.startswith("START word0") and cut_user.endswith("END")
    assert f.messages[1]["content"] == answer
    # labels sit exactly on the assistant span: the masked prefix is the prompt
    first = next(i for i, lab in enumerate(f.labels) if lab != -100)
    assert all(lab == -100 for lab in f.labels[:first]) and f.labels[first:] == f.input_ids[first:]


def test_the_longest_user_turn_is_cut_first_and_drop_counts(chat):
    long_turn = " ".join(f"fact{i}" for i in range(200))
    messages = [{"role": "user", "content": "short question one"}, {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": long_turn}, {"role": "assistant", "content": "second answer"}]
    f = fit(chat, messages, 120, "middle-of-user")
    assert f.outcome == "cut" and f.messages[0]["content"] == "short question one"
    assert MARKER.strip() in f.messages[2]["content"]
    assert assistant_tokens(f.labels) == assistant_tokens(encode_conversation(chat, messages)[1])

    convs = [conv("hi " * 5, "ok")] * 7 + [conv("long " * 400, "fine")] * 3
    spec = TrainSpec(max_seq_len=96, truncation="drop")
    report = plan(spec, convs, chat, context=None)
    assert (report["over"], report["dropped"], report["cut"]) == (3, 3, 0) and report["needs_confirm"]
    assert any("3 dropped" in line for line in summary_lines(report))
    rows, counts = tokenize(chat, convs, 96, "drop")
    assert len(rows) == 7 and counts == {"over": 3, "cut": 0, "dropped": 3, "masked": 0}
    rows, counts = tokenize(chat, convs, 96, "middle-of-user")
    assert len(rows) == 10 and counts["cut"] == 3 and all(len(r["input_ids"]) <= 96 for r in rows)
    # an assistant turn that alone is longer than the limit cannot be saved by cutting the user turn
    assert fit(chat, conv("question", "answer " * 200), 96, "middle-of-user").outcome == "dropped"


def test_the_runner_tokenizer_measures_the_same(tok_dir, chat):
    from transformers import AutoTokenizer

    hf = hf_chat(AutoTokenizer.from_pretrained(tok_dir))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarise: ünïcode ✓ " * 9},
                {"role": "assistant", "content": "A line."}, {"role": "user", "content": "Again?"},
                {"role": "assistant", "content": "Yes — again."}]
    assert encode_conversation(hf, messages) == encode_conversation(chat, messages)
    assert encode_conversation(hf, conv("a", "b")) == encode_conversation(chat, conv("a", "b"))


def test_recipes_change_the_spec():
    base = TrainSpec()
    for name, recipe in RECIPES.items():
        spec = TrainSpec.model_validate(recipe_spec(name))
        assert spec.recipe == name and recipe.doc
        fields = ("learning_rate", "epochs", "max_seq_len", "truncation", "decoding")
        assert [getattr(spec, f) for f in fields] != [getattr(base, f) for f in fields]
    assert TrainSpec.model_validate(recipe_spec("short-answers")).truncation == "drop"
    assert TrainSpec.model_validate({**recipe_spec("summaries"), "learning_rate": 1e-4}).learning_rate == 1e-4
    with pytest.raises(SpecError, match="short-answers"):
        recipe_spec("poems")


def test_reference_set_reproduces(tmp_path):
    out = tmp_path / "general.jsonl"
    subprocess.run([sys.executable, str(REPO / "scripts" / "make_reference_data.py"), "--out", str(out)], check=True,
                   capture_output=True)
    committed = REPO / "data" / "reference" / "general.jsonl"
    assert out.read_bytes() == committed.read_bytes()
    rows = [json.loads(line)["messages"] for line in committed.read_text().splitlines()]
    assert len(rows) == 40 and all([m["role"] for m in r] == ["user", "assistant"] for r in rows)


def test_create_run_records_the_length_used_and_why(store, config, tok_dir):
    from forge.train import runs

    store.ingest([{"extract_key": f"k{i}", "source_kind": "jsonl", "source_ref": "x", "tags": [],
                   "messages": conv("please note " + "details " * (i * 3 + 1), f"noted {i}")} for i in range(30)])
    for i in store.ids():
        store.set_status(i, "approved")
    run_id, run_dir = runs.create_run(store, config, TrainSpec(base_model=str(tok_dir)))
    saved = json.loads((run_dir / "spec.json").read_text())
    report = json.loads((run_dir / "lengths.json").read_text())
    assert isinstance(saved["max_seq_len"], int) and saved["max_seq_len"] == report["max_seq_len"]
    assert saved["max_seq_len"] >= report["p98"] and saved["max_seq_len_reason"].startswith("auto: 98 %")
    assert store.get_run(run_id)["meta"]["lengths"]["max_seq_len"] == saved["max_seq_len"]

    asked = []
    with pytest.raises(runs.TruncationRefused, match="allow-truncation"):
        runs.create_run(store, config, TrainSpec(base_model=str(tok_dir), max_seq_len=48),
                        check_lengths=lambda r: asked.append(r) or not r["needs_confirm"])
    assert asked[0]["over_share"] > 0.02 and len(store.runs()) == 1  # nothing left of the refused run


@pytest.mark.slow
def test_cli_refuses_then_trains_with_forgetting_and_padding_share(tmp_path, base_model_dir):
    import os

    from forge.train.events import read_events

    ws = tmp_path / "ws"
    data = tmp_path / "d.jsonl"
    rows = [(f"remind me to water plant {i} at {i % 12 + 1}", f"water plant {i} | at {i % 12 + 1}") for i in range(10)]
    rows += [(f"here is the whole story {k}: " + "and then it rained again " * 30 + "so remind me to buy an umbrella",
              f"buy umbrella {k} | soon") for k in range(6)]
    data.write_text("".join(json.dumps({"input": u, "output": a}) + "\n" for u, a in rows))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}

    def forge(*args):
        return subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), *args], capture_output=True,
                              text=True, cwd=REPO, env=env, timeout=900)

    forge("extract", "jsonl", str(data))
    forge("approve", *[str(i) for i in range(1, 17)])
    common = ["--set", f"base_model={base_model_dir}", "--set", "max_seq_len=64", "--set", "batch_size=4",
              "--set", "lora_r=8", "--set", 'target_modules=["q_proj", "v_proj"]', "--max-steps", "2"]
    p = forge("train", *common, "--json")
    assert p.returncode == 1 and "--allow-truncation" in json.loads(p.stdout)["error"]
    assert len(p.stderr.strip().splitlines()) == 1 and "max_seq_len 64 would truncate" in p.stderr
    assert json.loads(forge("runs", "--json").stdout) == []

    p = forge("train", *common, "--recipe", "summaries", "--allow-truncation")
    assert p.returncode == 0, p.stderr
    assert "p98" in p.stderr and "cut in the middle of the longest user turn" in p.stderr  # the report, first
    run = json.loads(forge("runs", "--json").stdout)[0]
    run_dir = __import__("pathlib").Path(run["run_dir"])
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["recipe"] == "summaries" and spec["learning_rate"] == 5e-4 and spec["max_seq_len"] == 64
    forgetting = json.loads((run_dir / "forgetting.json").read_text())
    assert {"loss_before", "loss_after", "change", "warn", "threshold"} <= set(forgetting)
    assert forgetting["loss_before"] > 0 and forgetting["change"] == pytest.approx(
        forgetting["loss_after"] - forgetting["loss_before"], abs=1e-3)
    messages = [e.get("message", "") for e in read_events(run_dir)[0]]
    assert any(m.startswith("padding share") and "length-grouped" in m for m in messages)
    report = json.loads((run_dir / "lengths.json").read_text())
    assert report["over"] == report["cut"] >= 1 and report["dropped"] == 0
    assert any(f"{report['over']} training examples were longer than max_seq_len 64" in m
               and f"{report['cut']} cut" in m for m in messages)
    status = json.loads((run_dir / "status.json").read_text())
    assert 0 <= status["padding_share"] < 1 and status["forgetting"]["loss_after"] == forgetting["loss_after"]
