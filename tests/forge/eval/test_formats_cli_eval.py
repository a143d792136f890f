"""The new formats through the real `forge` CLI (--json contract, one-line errors) and as `forge eval --test-file`:
the held-out prompts and references read from CSV, TSV, Parquet and save_to_disk folders by the function eval uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge import eval as ev
from tests.data.dataset_files import write_all
from tests.forge.test_cli import forge, js

FORMATS = Path(__file__).resolve().parents[2] / "data" / "formats"
REPORT_KEYS = {"added", "updated", "unchanged", "kept", "duplicates", "read", "skipped", "reasons", "hint"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("datasets"))


def test_extract_dataset_json_contract_and_one_line_errors(tmp_path, files):
    ws = tmp_path / "ws"
    r = js(forge(ws, "extract", "dataset", str(files["saved_dict"]), "--json"))
    assert set(r) >= REPORT_KEYS | {"dataset"}
    assert (r["read"], r["added"], r["reasons"]) == (4, 3, {"empty": 1})
    assert r["dataset"] == {"split": "train", "splits": ["train", "test", "validation"],
                            "columns": ["question", "answer", "tags"], "shape": "columns question → answer",
                            "rows": 4}
    assert r["skipped"] == [{"source": f"{files['saved_dict']}:train:2", "reason": "empty 'answer' value",
                             "code": "empty"}]
    again = js(forge(ws, "extract", "dataset", str(files["saved_dict"]), "--json"))
    assert (again["added"], again["unchanged"]) == (0, 3)
    r = js(forge(ws, "extract", "dataset", str(files["alpaca.parquet"]), "--limit", "2", "--json"))
    assert (r["read"], r["added"]) == (2, 2)

    p = forge(ws, "extract", "dataset", str(files["saved_dict"]), "--split", "tset", "--json", check=False)
    assert p.returncode == 1 and p.stdout.count("\n") == 1
    assert js(p) == {"error": f"{files['saved_dict']}: no split 'tset'; it has train, test, validation: "
                              f"pass --split train"}
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr
    p = forge(ws, "extract", "dataset", str(files["saved_dict"]), "--prompt-column", "query", "--response-column",
              "answer", check=False)
    assert p.returncode == 1 and p.stderr.strip() == (f"forge: error: {files['saved_dict']} [train]: no column "
                                                      f"'query'; it has: question, answer, tags")


def test_extract_tsv_and_self_instruct_from_the_cli(tmp_path):
    ws = tmp_path / "ws"
    r = js(forge(ws, "extract", "csv", str(FORMATS / "bom_quoted_tabs.tsv"), "--system-column", "system", "--json"))
    assert (r["added"], len(r["skipped"])) == (4, 2)
    r = js(forge(ws, "extract", "csv", str(FORMATS / "cp1252_columns.tsv"), "--prompt-column", "Frage",
                 "--response-column", "Antwort", "--json"))
    assert r["added"] == 2
    r = js(forge(ws, "extract", "jsonl", str(FORMATS / "self_instruct_seed.jsonl"), "--json"))
    assert (r["added"], r["reasons"]) == (5, {"empty": 3, "bad-record": 3})
    human = forge(ws, "extract", "dataset", str(FORMATS.parent / "formats"), check=False)
    assert human.returncode == 1 and "not a dataset folder" in human.stderr


# ---- eval --test-file in every format ------------------------------------------------------------------------
def refs(prompts):
    return [(p["messages"][-1]["content"], p["expected"]) for p in prompts]


def test_eval_reads_a_csv_with_column_flags_and_the_config_template(tmp_path, config):
    p = tmp_path / "heldout.csv"
    p.write_text('id,dialogue,summary\n1,"A: hi\nB: hello",They greet.\n2,A: bye,\n3,A: rain?,They talk weather.\n')
    prompts, dataset = ev.load_prompts(p, columns={"prompt_column": "dialogue", "response_column": "summary"})
    assert refs(prompts) == [("A: hi\nB: hello", "They greet."), ("A: rain?", "They talk weather.")]
    assert dataset.startswith("heldout.csv:")
    config.extract.csv.prompt_template = "Summarise:\n\n{prompt}"
    prompts, _ = ev.load_prompts(p, columns={"prompt_column": "dialogue", "response_column": "summary"},
                                 config=config)
    assert prompts[0]["messages"] == [{"role": "user", "content": "Summarise:\n\nA: hi\nB: hello"}]
    with pytest.raises(ev.EvalError, match=r"no usable examples \(cannot tell which columns"):
        ev.load_prompts(p)
    with pytest.raises(ev.EvalError, match="one file with no splits"):
        ev.load_prompts(p, split="test")
    with pytest.raises(ev.EvalError, match="--messages-column is for Parquet"):
        ev.load_prompts(p, columns={"messages_column": "dialogue"})


def test_eval_reads_tsv_parquet_arrow_and_save_to_disk(files):
    prompts, _ = ev.load_prompts(FORMATS / "cp1252_columns.tsv",
                                 columns={"prompt_column": "Frage", "response_column": "Antwort"})
    assert refs(prompts)[0] == ("Was kostet ein Café?", "3 € — mit Kuchen 5 €")
    prompts, _ = ev.load_prompts(files["alpaca.parquet"])
    assert refs(prompts)[0] == ("Translate to English.\n\nbonjour", "hello") and len(prompts) == 3
    prompts, _ = ev.load_prompts(files["chat.arrow"], columns={"messages_column": "messages"})
    assert prompts[0]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"}]
    # a DatasetDict: the test split by default, any split on request; a wrong one names those there are
    assert refs(ev.load_prompts(files["saved_dict"])[0]) == [("held out?", "yes")]
    assert refs(ev.load_prompts(files["saved_dict"], split="validation")[0]) == [("val?", "v")]
    with pytest.raises(ev.EvalError, match="no split 'dev'; it has train, test, validation"):
        ev.load_prompts(files["saved_dict"], split="dev")
    with pytest.raises(ev.EvalError, match="no column 'nope'; it has: question, answer, tags"):
        ev.load_prompts(files["saved_dict"], columns={"prompt_column": "nope", "response_column": "answer"})


def test_eval_jsonl_still_reads_every_shape_and_refuses_column_flags(tmp_path):
    prompts, _ = ev.load_prompts(FORMATS / "self_instruct_seed.jsonl")
    assert len(prompts) == 5 and prompts[-1]["expected"] == "Buy eggs, milk and bread."
    with pytest.raises(ev.EvalError, match="JSONL records are read by their shape"):
        ev.load_prompts(FORMATS / "self_instruct_seed.jsonl", columns={"prompt_column": "x"})


@pytest.mark.slow
def test_real_eval_on_a_parquet_test_file(tmp_path):
    """The bundled model on three held-out prompts from a Parquet file, through the real CLI."""
    from datasets import Dataset

    p = tmp_path / "test.parquet"
    Dataset.from_dict({"Question": ["What is 2+2?", "Capital of France?", None],
                       "Answer": ["4", "Paris", "orphan"]}).to_parquet(str(p))
    out = forge(tmp_path / "ws", "eval", "base", "--baseline", "none", "--baselines", "none", "--max-tokens", "4",
                "--test-file", str(p), "--prompt-column", "question", "--response-column", "answer", "--json")
    r = json.loads(out.stdout)
    assert r["n"] == 2 and r["dataset"].startswith("test.parquet:") and r["max_tokens"] == 4
    assert set(r["model"]) >= {"exact_match", "rouge_l"}
