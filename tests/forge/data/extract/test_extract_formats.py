"""The formats users have: Self-Instruct seed tasks, TSV, and dataset files (Parquet, Arrow, save_to_disk folders,
Hub-style Parquet shards). One test per shape and per skip reason, on the messy files in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config import CsvConfig
from forge.data.extract import file_kind, run_extract
from forge.data.extract.common import ExtractError, record_to_messages
from forge.data.extract.dataset import HELD_OUT_SPLITS, extract_dataset
from forge.data.extract.jsonl import extract_jsonl
from forge.data.extract.tabular import extract_csv
from tests.data.dataset_files import write_all

FORMATS = Path(__file__).resolve().parents[3] / "data" / "formats"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("datasets"))


def pairs(result):
    return [(it["messages"][-2]["content"], it["messages"][-1]["content"]) for it in result.items]


def skips(result):
    return {(s.source, s.code): s.reason for s in result.skipped}


# ---- Self-Instruct ---------------------------------------------------------------------------------------------
def test_self_instruct_each_instance_is_an_example():
    r = extract_jsonl(FORMATS / "self_instruct_seed.jsonl", 10**7, 10**6)
    got = pairs(r)
    assert got[0] == ("Is there anything I can eat for a breakfast that doesn't include eggs, yet includes protein, "
                      "and has roughly 700-1000 calories?",
                      "Yes, you can have 1 oatmeal banana protein shake and 4 strips of bacon.")
    assert got[1] == ("What is the relation between the given pairs?\n\nNight : Day :: Right : Left",
                      "The relation between the given pairs is that they are opposites.")
    assert got[2][1] == "They are opposites." and got[3][1] == "mixed"
    assert got[4] == ("Turn the list into a sentence.\n\n- eggs\n- milk\n- bread", "Buy eggs, milk and bread.")
    assert len(r.items) == 5 and [it["line"] for it in r.items] == [1, 2, 2, 3, 6]
    assert len({it["extract_key"] for it in r.items}) == 5


def test_self_instruct_bad_instances_and_empty_lists_are_skipped_with_reasons():
    p = FORMATS / "self_instruct_seed.jsonl"
    r = extract_jsonl(p, 10**7, 10**6)
    s = skips(r)
    assert s[(f"{p}:3 (instance 2)", "empty")] == "instance 2: 'output' is null"
    assert s[(f"{p}:3 (instance 3)", "bad-record")] == "instance 3 is text, not {input, output}"
    assert s[(f"{p}:3 (instance 4)", "bad-record")] == \
        "instance 4: has 'instruction' but no 'output' (or response, answer, completion)"
    assert s[(f"{p}:3 (instance 5)", "empty")] == "instance 5: the assistant turn is empty"
    assert s[(f"{p}:4", "empty")] == "a Self-Instruct task with an empty 'instances' list"
    assert s[(f"{p}:5", "bad-record")] == "'instances' is text, not a list"
    assert len(r.skipped) == 6


def test_self_instruct_through_run_extract_is_idempotent(store, config):
    first = run_extract(store, "jsonl", FORMATS / "self_instruct_seed.jsonl", config)
    again = run_extract(store, "jsonl", FORMATS / "self_instruct_seed.jsonl", config)
    assert (first["added"], again["added"], again["unchanged"]) == (5, 0, 5)
    assert first["reasons"] == {"empty": 3, "bad-record": 3}


# ---- TSV -------------------------------------------------------------------------------------------------------
def test_tsv_with_bom_quoted_tabs_and_newlines():
    p = FORMATS / "bom_quoted_tabs.tsv"
    assert file_kind(p) == "csv"
    r = extract_csv(p, CsvConfig(), 10**7, 10**6, system_column="system")
    # a quoted tab stays inside its field (then normalised to a space, as every odd space is)
    assert r.items[0]["messages"] == [{"role": "system", "content": "You rewrite text."},
                                      {"role": "user", "content": "Split this on tabs"},
                                      {"role": "assistant", "content": "Split, this, on commas"}]
    got = pairs(r)
    assert got[1] == ("A field with a\nnewline", "One line.")
    assert got[2] == ("Café order?", "Un café crème, s'il vous plaît.")
    assert got[3] == ('She said "hi" then left', "A quote and a tab inside.")
    assert len(r.items) == 4
    assert {s.reason for s in r.skipped} == {"empty 'response' value"}
    assert [s.source.rsplit(":", 1)[1] for s in r.skipped] == ["5", "7"]  # the empty answer and the short row


def test_tsv_cp1252_with_column_flags_and_a_missing_column():
    p = FORMATS / "cp1252_columns.tsv"
    r = extract_csv(p, CsvConfig(), 10**7, 10**6, prompt_column="frage", response_column="Antwort")
    assert pairs(r) == [("Was kostet ein Café?", "3 € — mit Kuchen 5 €"), ("Grüße?", "Grüß Gott!")]
    r = extract_csv(p, CsvConfig(), 10**7, 10**6, prompt_column="Question", response_column="Antwort")
    assert r.items == [] and r.skipped[0].reason == "column 'Question' not found; the header has: Frage, Antwort, Notiz"


def test_tsv_extension_wins_over_a_header_full_of_commas(tmp_path):
    p = tmp_path / "commas.tsv"
    p.write_text("prompt, in words\tresponse, in words\nA, B, C\tD, E\n")
    r = extract_csv(p, CsvConfig(), 10**7, 10**6, prompt_column="prompt, in words",
                    response_column="response, in words")
    assert pairs(r) == [("A, B, C", "D, E")]


# ---- dataset files: one test per shape ------------------------------------------------------------------------
def test_parquet_alpaca_rows_with_none_and_empty_fields(files):
    p = files["alpaca.parquet"]
    r = extract_dataset(p, 10**6)
    assert pairs(r) == [("Translate to English.\n\nbonjour", "hello"), ("Say hi.", "hi"),
                        ("Count to three.", "one, two, three")]
    assert r.read == 6 and [it["line"] for it in r.items] == [0, 1, 5]
    assert skips(r) == {(f"{p}:2", "empty"): "empty 'instruction' value", (f"{p}:3", "empty"): "empty 'output' value",
                        (f"{p}:4", "empty"): "empty 'instruction' value"}
    assert r.survey["shape"] == "columns instruction + input → output" and r.survey["split"] == "train"
    assert r.items[0]["source_kind"] == "dataset" and r.items[0]["source_ref"] == "alpaca.parquet:0"


def test_arrow_file_with_chat_rows(files):
    p = files["chat.arrow"]
    assert file_kind(p) == "dataset"
    r = extract_dataset(p, 10**6)
    assert [it["messages"] for it in r.items] == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
         {"role": "assistant", "content": "a1"}],
        [{"role": "user", "content": "q4"}, {"role": "assistant", "content": "a4"}]]
    assert skips(r) == {(f"{p}:1", "empty"): "'messages' is empty",
                        (f"{p}:2", "bad-record"): "'messages' is not a list of {role, content} turns with known roles",
                        (f"{p}:4", "empty"): "no assistant turn"}


def test_feather_file_with_prompt_response_and_a_bytes_column(files):
    p = files["pairs.feather"]
    r = extract_dataset(p, 10**6)
    assert pairs(r) == [("p1", "r1"), ("p3", "r3")]
    assert skips(r) == {(f"{p}:1", "empty"): "empty 'response' value"}
    r = extract_dataset(p, 10**6, prompt_column="prompt", response_column="blob")
    assert r.items == [] and skips(r)[(f"{p}:0", "bad-record")] == "'blob' holds bytes, not text"


def test_self_instruct_rows_in_a_parquet_file(files):
    p = files["self_instruct.parquet"]
    r = extract_dataset(p, 10**6)
    assert pairs(r) == [("Give the antonym.\n\nhot", "cold"), ("Give the antonym.\n\nup", "down"),
                        ("Classify the sentiment.\n\ngreat film", "positive")]
    assert skips(r) == {(f"{p}:1", "empty"): "a Self-Instruct task with an empty 'instances' list",
                        (f"{p}:2 (instance 2)", "empty"): "instance 2: 'output' is null"}
    assert r.survey["shape"] == "Self-Instruct (instruction + instances)"


def test_save_to_disk_dataset_dict_reads_train_and_names_its_splits(files):
    p = files["saved_dict"]
    r = extract_dataset(p, 10**6)
    assert pairs(r) == [("What is 2+2?", "4"), ("Capital of France?", "Paris"), ("Listy?", "fine")]
    assert skips(r) == {(f"{p}:train:2", "empty"): "empty 'answer' value"}
    assert r.survey["split"] == "train" and r.survey["splits"] == ["train", "test", "validation"]
    assert pairs(extract_dataset(p, 10**6, split="validation")) == [("val?", "v")]
    assert pairs(extract_dataset(p, 10**6, prefer=HELD_OUT_SPLITS)) == [("held out?", "yes")]
    with pytest.raises(ExtractError) as e:
        extract_dataset(p, 10**6, split="tset")
    assert str(e.value) == f"{p}: no split 'tset'; it has train, test, validation: pass --split train"


def test_save_to_disk_single_dataset_with_class_label_names(files):
    r = extract_dataset(files["saved_single"], 10**6)
    assert pairs(r) == [("loved it", "positive"), ("hated it", "negative"), ("it was fine", "positive")]
    with pytest.raises(ExtractError, match="holds one dataset"):
        extract_dataset(files["saved_single"], 10**6, split="test")
    assert pairs(extract_dataset(files["classified.parquet"], 10**6))[0] == ("loved it", "positive")


def test_hub_folder_of_parquet_shards(files):
    r = extract_dataset(files["hub"], 10**6)
    assert pairs(r) == [("t1", "c1"), ("t2", "c2"), ("t3", "c3")] and r.survey["splits"] == ["test", "train"]
    assert pairs(extract_dataset(files["hub"], 10**6, split="test")) == [("e1", "d1")]
    assert r.items[2]["source_ref"] == "hub/data/train-00001-of-00002.parquet:0"


def test_column_flags_and_a_missing_column_names_the_columns(files):
    p = files["saved_dict"]
    r = extract_dataset(p, 10**6, prompt_column="ANSWER", response_column="question")
    assert pairs(r)[0] == ("4", "What is 2+2?")
    with pytest.raises(ExtractError) as e:
        extract_dataset(p, 10**6, prompt_column="query", response_column="answer")
    assert str(e.value) == f"{p} [train]: no column 'query'; it has: question, answer, tags"
    with pytest.raises(ExtractError, match="give both"):
        extract_dataset(p, 10**6, prompt_column="question")
    with pytest.raises(ExtractError, match=r"cannot tell which columns .* \(it has: blob\)"):
        from datasets import Dataset

        q = p.parent / "blob.parquet"
        Dataset.from_dict({"blob": ["x"]}).to_parquet(str(q))
        extract_dataset(q, 10**6)


def test_list_cells_and_a_system_column(files):
    """A list of strings is text (words joined by spaces, sentences by newlines); a list of turns is not."""
    p = files["saved_dict"]
    r = extract_dataset(p, 10**6, prompt_column="question", response_column="tags")
    assert pairs(r) == [("What is 2+2?", "math"), ("Listy?", "x y")]
    assert {s.reason for s in r.skipped} == {"empty 'tags' value"}
    c = files["chat.arrow"]
    r = extract_dataset(c, 10**6, prompt_column="messages", response_column="messages")
    assert skips(r)[(f"{c}:0", "bad-record")] == "'messages' holds a list, not text"
    q = files["pairs.feather"]
    r = extract_dataset(q, 10**6, prompt_column="prompt", response_column="prompt", system_column="response")
    assert r.items[0]["messages"][0] == {"role": "system", "content": "r1"}


def test_too_large_and_limit(files):
    p = files["alpaca.parquet"]
    r = extract_dataset(p, 12)
    assert skips(r)[(f"{p}:0", "too-large")] == ("the user turn is over the 12-byte limit (extract.max_line_bytes)")
    r = extract_dataset(p, 10**6, limit=2)
    assert r.read == 2 and len(r.items) == 2


def test_damaged_and_wrong_files_are_reported_not_raised(files, tmp_path):
    p = files["damaged.parquet"]
    r = extract_dataset(p, 10**6)
    assert r.items == [] and r.skipped[0].code == "unreadable" and r.skipped[0].source == str(p)
    with pytest.raises(ExtractError, match="not a dataset folder"):
        extract_dataset(tmp_path, 10**6)
    with pytest.raises(ExtractError, match="not a Parquet or Arrow file"):
        extract_dataset(FORMATS / "self_instruct_seed.jsonl", 10**6)


def test_run_extract_reports_the_split_and_is_idempotent(store, config, files):
    first = run_extract(store, "dataset", files["saved_dict"], config)
    assert (first["read"], first["added"], first["reasons"]) == (4, 3, {"empty": 1})
    assert first["dataset"]["split"] == "train" and first["dataset"]["shape"] == "columns question → answer"
    again = run_extract(store, "dataset", files["saved_dict"], config)
    assert (again["added"], again["unchanged"]) == (0, 3)
    test = run_extract(store, "dataset", files["saved_dict"], config, split="test")
    assert test["added"] == 1


def test_tsv_with_literal_quotes_keeps_every_row():
    """Tab-separated corpora (MRPC, WikiQA) take quotes as text: a field that opens with `"` must not swallow the rows
    after it, as reading the file as quoted CSV would."""
    p = FORMATS / "literal_quotes.tsv"
    r = extract_csv(p, CsvConfig(), 10**7, 10**6, prompt_column="#1 String", response_column="#2 String")
    assert pairs(r) == [("He said the pie business does not fit .", '" The pie business does not fit our strategy .'),
                        ('She said he was " fully behind " the plan .',
                         'His wife said he was " 100 percent behind " it .'),
                        ("A plain row .", "Another plain row .")]
    assert [it["line"] for it in r.items] == [2, 3, 4] and r.skipped == []


def test_a_bom_before_bytes_that_are_not_utf8_still_reads(tmp_path):
    p = tmp_path / "resaved.tsv"
    p.write_bytes(b"\xef\xbb\xbf" + "prompt\tresponse\nCaf\u00e9?\tOui.\n".encode("cp1252"))
    assert pairs(extract_csv(p, CsvConfig(), 10**7, 10**6)) == [("Caf\u00e9?", "Oui.")]


def test_a_git_lfs_pointer_in_place_of_a_shard_says_what_to_do(tmp_path):
    """Cloned without git-lfs, a Hub dataset's shards are 130-byte text pointers (seen on a real repository)."""
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 1222790\n"
    for split in ("train", "test"):
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / f"{split}-00000-of-00001.parquet").write_bytes(pointer)
    r = extract_dataset(tmp_path, 10**6, split="test")
    assert r.items == [] and r.skipped[0].code == "unreadable" and "git lfs pull" in r.skipped[0].reason
    assert r.survey["split"] == "test" and r.survey["splits"] == ["test", "train"]


def test_a_shard_with_other_columns_is_skipped_and_rows_name_their_shard(tmp_path):
    from datasets import Dataset

    (tmp_path / "data").mkdir()
    Dataset.from_dict({"prompt": ["a", "b"], "response": ["1", ""]}).to_parquet(
        str(tmp_path / "data" / "train-00000-of-00002.parquet"))
    Dataset.from_dict({"foo": ["x"]}).to_parquet(str(tmp_path / "data" / "train-00001-of-00002.parquet"))
    r = extract_dataset(tmp_path, 10**6)
    assert pairs(r) == [("a", "1")]
    first, second = (tmp_path / "data" / f"train-0000{k}-of-00002.parquet" for k in (0, 1))
    assert skips(r)[(f"{first}:1", "empty")] == "empty 'response' value"
    assert "other columns than the first shard" in skips(r)[(str(second), "bad-record")]


# ---- Dolly and other instruction shapes; files cloned without git-lfs ---------------------------------------------
def test_dolly_rows_with_context_and_the_question_and_query_shapes():
    """databricks-dolly-15k's {instruction, context, response, category}: the context follows the instruction in the
    user turn (left out when blank); a null or non-text response is skipped, naming the key. SQuAD-style
    {question, context, answer} and {query, response} read too."""
    p = FORMATS / "dolly_and_friends.jsonl"
    r = extract_jsonl(p, 10**7, 10**6)
    got = pairs(r)
    assert got[0] == ("When did Virgin Australia start operating?\n\nVirgin Australia, the trading name of Virgin "
                      "Australia Airlines Pty Ltd, is an Australian-based airline. It commenced services on 31 August "
                      "2000 as Virgin Blue, with two aircraft on a single route.",
                      "Virgin Australia commenced services on 31 August 2000 as Virgin Blue.")
    assert got[1] == ("Which is a species of fish? Tope or Rope", "Tope")  # empty context: no blank lines added
    assert got[3][0] == "Write a haiku about a kettle."  # whitespace-only context left out, the nbsp normalised
    assert got[4] == ("Who wrote it?\n\nThe Hobbit is a novel by J. R. R. Tolkien.", "J. R. R. Tolkien")
    assert got[5] == ("今天天气怎么样？", "今天晴朗。")
    assert len(got) == 6
    # Keys forge read before keep their precedence: Alpaca's `output`, `input` over `prompt`, no context on a prompt.
    assert record_to_messages({"instruction": "X", "output": "O", "response": "R"})[-1]["content"] == "O"
    assert [m["content"] for m in record_to_messages({"prompt": "P", "input": "I", "output": "O"})] == ["I", "O"]
    assert record_to_messages({"prompt": "P", "completion": "C", "context": "K"})[0]["content"] == "P"
    assert record_to_messages({"prompt": "P", "completion": "C", "mapping": {}})[0]["content"] == "P"
    assert skips(r) == {(f"{p}:5", "empty"): "'response' is null",
                        (f"{p}:6", "bad-record"): "'response' is a list, not text"}


@pytest.mark.parametrize("name,size", [("lfs_pointer.jsonl", "13.1 MB"), ("lfs_pointer.csv", "524 kB")])
def test_a_file_cloned_without_git_lfs_says_so_and_how_to_fetch_it(name, size, store, config):
    """A Hub dataset cloned without git-lfs (databricks-dolly-15k, seen here) holds a 130-byte pointer: the import
    says what it is, the size it stands for and the command, instead of 'not valid JSON' on three lines."""
    with pytest.raises(ExtractError) as e:
        run_extract(store, file_kind(FORMATS / name), FORMATS / name, config)
    assert str(e.value).startswith(f"{FORMATS / name}: a Git LFS pointer to a {size} file, not the data: run "
                                   f"`git lfs pull`")
    assert store.counts()["total"] == 0


def test_an_excel_export_with_a_sep_line_in_cp1252():
    """European Excel writes `sep=;` as the first line and saves in cp1252: the line names the delimiter and is not
    the header; the rows keep their file line numbers; a short German text reads as cp1252, not Mac Roman."""
    p = FORMATS / "excel_sep_cp1252.csv"
    r = extract_csv(p, CsvConfig(), 10**7, 10**6, prompt_column="Frage", response_column="Antwort")
    assert pairs(r) == [("Wie spät ist es?", "Es ist drei Uhr."), ("Was kostet das?", "Zehn Euro; bar.")]
    assert [it["source_ref"] for it in r.items] == [f"{p.name}:3", f"{p.name}:4"]


def test_a_header_that_names_a_column_twice_is_refused_with_the_columns(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("prompt,prompt,response\na,b,c\n")
    r = extract_csv(p, CsvConfig(), 10**7, 10**6)
    assert r.items == [] and skips(r)[(str(p), "bad-record")] == (
        "the header names 'prompt' more than once (columns 1, 2): rename one, or pass "
        "--prompt-column/--response-column")


# ---- chat exports: a person's own ChatGPT and Claude history --------------------------------------------------------
def test_a_chatgpt_export_gives_one_conversation_per_example_along_the_branch_shown():
    """conversations.json of ChatGPT's data export: each conversation is a tree; the branch ending at current_node
    is the one kept (a regenerated answer on another branch is not), hidden system messages, tool calls, tool output
    and images are left out, an answer split around a tool call is one turn, and every example and skip names its
    conversation."""
    p = FORMATS / "chatgpt_conversations.json"
    r = extract_jsonl(p, 10**7, 10**6)
    convs = {it["source_ref"]: [(m["role"], m["content"]) for m in it["messages"]] for it in r.items}
    assert convs[f"{p.name}:1 (conversation 'Sourdough starter')"] == [
        ("user", "My starter smells like nail polish. Is it dead?"),
        ("assistant", "It is hungry, not dead: that acetone smell means it ran out of food. Feed it twice a day for "
                      "a few days."),
        ("user", "How much flour per feed?"),
        ("assistant", "Equal weights of starter, flour and water — say 50 g each.")]
    assert convs[f"{p.name}:1 (conversation 'Loan maths')"] == [
        ("user", "What is the monthly payment on 10,000 at 5 % over 3 years?"),
        ("assistant", "About 299.71 a month.\n\nThat is 10,789.56 paid in total.")]
    assert convs[f"{p.name}:1 (conversation 'untitled')"] == [("user", "Name a blue flower."),
                                                              ("assistant", "Cornflower.")]  # no current_node
    # An image-only question ends the conversation there: "A dog." answers what forge cannot see.
    assert convs[f"{p.name}:1 (conversation 'Photos')"] == [("user", "What is in this photo?"),
                                                           ("assistant", "A cat on a windowsill.")]
    assert not any("Throw it away" in str(c) or "execution" in str(c) for c in convs.values())
    assert skips(r) == {(f"{p}:1 (conversation 'Unanswered')", "empty"): "no assistant turn",
                        (f"{p}:1 (conversation 'Broken tree')", "empty"): "no assistant turn"}
    assert r.read == 6


def test_a_claude_export_keeps_the_text_blocks_of_each_message(store, config):
    p = FORMATS / "claude_conversations.json"
    report = run_extract(store, "jsonl", p, config)
    assert report["added"] == 2 and report["reasons"] == {"empty": 1}
    by_ref = {e.source_ref: [(m["role"], m["content"]) for m in e.messages] for e in store.examples()}
    assert by_ref[f"{p.name}:1 (conversation 'Packing list')"] == [
        ("user", "What should I pack for two nights in Oslo in March?"),
        ("assistant", "Layers: a warm coat,\n\ngloves and shoes with grip.")]  # tool use and result left out
    assert by_ref[f"{p.name}:1 (conversation 'Old export')"][1] == ("assistant", "Takk.")
    assert run_extract(store, "jsonl", p, config)["unchanged"] == 2  # a re-run changes nothing


def test_a_file_over_the_size_limit_names_the_setting_and_a_value_that_works(tmp_path):
    """A ChatGPT export is easily over the 20 MB default: the skip says which setting raises the limit and a value
    that fits this file, and that value, given as the environment variable it names, imports it."""
    import os
    import subprocess
    import sys

    p = FORMATS / "dolly_and_friends.jsonl"
    cmd = [sys.executable, "-m", "forge.cli", "--workspace", str(tmp_path / "ws"), "extract", "jsonl", str(p)]
    repo = Path(__file__).resolve().parents[4]
    small = subprocess.run(cmd, capture_output=True, text=True, cwd=repo,
                           env={**os.environ, "FORGE_EXTRACT__MAX_FILE_BYTES": "100"})
    advice = "(extract.max_file_bytes: raise it in config.json, or run with FORGE_EXTRACT__MAX_FILE_BYTES=10000000)"
    assert f"bytes is over the 100-byte limit {advice}" in small.stderr and "added 0" in small.stdout
    enough = subprocess.run(cmd, capture_output=True, text=True, cwd=repo,
                            env={**os.environ, "FORGE_EXTRACT__MAX_FILE_BYTES": "10000000"})
    assert "added 6," in enough.stdout, enough.stderr


def test_a_sep_line_without_a_character_is_not_taken_for_a_delimiter(tmp_path):
    p = tmp_path / "odd.csv"
    p.write_bytes(b"sep=\r\nprompt,response\r\nhi,there\r\n")
    r = extract_csv(p, CsvConfig(), 10**7, 10**6, prompt_column="prompt", response_column="response")
    assert r.items == [] and "sep=" in skips(r)[(str(p), "bad-record")]  # the header is that line, named as it is
