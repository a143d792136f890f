"""Preference datasets in: DPO pairs and KTO labels from JSONL, CSV and Parquet, in the shapes TRL documents and
public sets use (TRL standard and conversational, UltraFeedback-binarized, Anthropic HH-RLHF transcripts, Orca DPO
pairs, KTO prompt/completion/label), stored as examples in a real SQLite store: what the import report says, what
is stored, what `forge list` shows, and that a re-import adds nothing."""

import json
from pathlib import Path

from click.testing import CliRunner

from forge.cli import main
from forge.data.extract import run_extract

PREFS = Path(__file__).resolve().parents[2] / "data" / "preferences"


def by_line(store) -> dict:
    return {ex.line: ex for ex in store.examples()}


def skipped_by_line(report) -> dict[str, str]:
    return {s["source"].rsplit(":", 1)[1]: s["reason"] for s in report["skipped"]}


def turns(*pairs):
    return [{"role": r, "content": c} for r, c in pairs]


def test_mixed_jsonl_imports_pairs_and_labels_and_skips_bad_rows_with_their_line(store, config):
    """A UTF-8-with-BOM, CRLF file mixing every shape with bad rows: eight examples, seven skips naming the line."""
    config.extract.max_line_bytes = 4_000  # line 14's rejected answer is ~7 kB
    path = PREFS / "mixed.jsonl"
    r = run_extract(store, "jsonl", path, config)
    assert (r["added"], r["duplicates"], len(r["skipped"])) == (8, 0, 7)
    assert all(s["source"].startswith(f"{path}:") for s in r["skipped"])
    why = skipped_by_line(r)
    assert sorted(why, key=int) == ["9", "10", "11", "12", "13", "14", "15"]
    assert why["9"] == "'chosen' and 'rejected' are the same answer"
    assert why["10"] == "'rejected' is empty"
    assert why["11"] == "'label' is 'yes', not true or false"
    assert "no 'prompt'" in why["12"] and "Human:/Assistant: transcripts" in why["12"]
    assert why["13"].startswith("'rejected' does not end with an assistant answer")
    assert "over the 4000-byte limit" in why["14"]
    assert "both must be text or both lists of turns" in why["15"]
    assert r["reasons"] == {"bad-record": 6, "empty": 1}

    ex = by_line(store)
    # TRL standard: prompt + chosen, the rejected answer in meta
    assert ex[1].messages == turns(("user", "What is the capital of France?"), ("assistant", "Paris."))
    assert ex[1].meta == {"rejected": "Lyon, I think."} and ex[1].rejected == "Lyon, I think."
    # the plain prompt/completion row with the same turns is an example of its own, not a duplicate of the pair
    assert ex[2].messages == ex[1].messages and ex[2].meta == {} and ex[2].rejected is None
    assert ex[3].messages == turns(("user", "Name a primary colour."), ("assistant", "Red.")) \
        and ex[3].rejected == "Pink."
    # UltraFeedback-binarized: the prompt is not repeated, its `messages` column does not make it an SFT row
    assert ex[4].messages == turns(("user", "How do I boil an egg?"),
                                   ("assistant", "Lower it into boiling water for 9 minutes, then cool it.")) \
        and ex[4].meta == {"rejected": "Microwave it in its shell."}
    # HH-RLHF with odd spacing: the shared turns are the prompt
    assert ex[5].messages == turns(("user", "Can you help me bake bread?"), ("assistant", "Sure, what kind?"),
                                   ("user", "Sourdough."),
                                   ("assistant", "Start with a lively starter and a long, cool rise.")) \
        and ex[5].rejected == "Buy bread instead."
    # KTO: a bool, the string "false", and 1 all read as labels
    assert ex[6].meta == {"label": True} and ex[6].messages[-1]["content"].startswith("Soft rain")
    assert ex[7].meta == {"label": False} and ex[7].label is False
    assert ex[8].messages == turns(("system", "Answer in one word."), ("user", "Opposite of hot?"),
                                   ("assistant", "Cold.")) and ex[8].label is True
    assert all(e.status == "pending" for e in ex.values())

    again = run_extract(store, "jsonl", path, config)
    assert (again["added"], again["unchanged"], len(again["skipped"])) == (0, 8, 7)
    assert store.counts()["total"] == 8


def test_utf16_hh_transcripts(store, config):
    """An HH-RLHF file saved as UTF-16 with a BOM: the accents survive, a tie and a broken transcript are skipped."""
    path = PREFS / "hh_utf16.jsonl"
    r = run_extract(store, "jsonl", path, config)
    assert r["added"] == 1
    why = skipped_by_line(r)
    assert why == {"2": "'chosen' and 'rejected' are the same answer",
                   "3": "'chosen' is a Human:/Assistant: transcript but 'rejected' is not"}
    (ex,) = store.examples()
    assert ex.messages == turns(("user", "What's a good name for a café?"),
                                ("assistant", "« Le Petit Crème » is warm and simple."))
    assert ex.rejected == "Café." and ex.source == "jsonl:hh_utf16.jsonl:1"


def test_cp1252_csv_of_kto_labels_is_not_read_as_prompt_completion(store, config):
    """prompt/completion is an SFT pair too: with a label column the rows are KTO labels, TRUE/0 as Excel writes
    them, and a label that is no boolean or a missing prompt is a skip naming the file line."""
    path = PREFS / "kto_cp1252.csv"
    r = run_extract(store, "csv", path, config)
    assert r["added"] == 2
    assert skipped_by_line(r) == {"4": "'label' is 'yes', not true or false", "5": "no 'prompt' for the completion"}
    ex = by_line(store)
    assert ex[2].messages == turns(("user", "Wie spät ist es?"), ("assistant", "Es ist fünf nach drei."))
    assert ex[2].label is True and ex[3].label is False and ex[3].messages[-1]["content"] == "Crème brûlée latte."
    assert run_extract(store, "csv", path, config)["unchanged"] == 2


def test_two_pairs_sharing_the_chosen_answer_are_two_examples(store, config, tmp_path):
    """Binarized sets pair one chosen answer with several rejected ones: each pair is kept, and its key holds the
    rejected text, so a changed rejected answer is a new pair and an unchanged file adds nothing."""
    path = tmp_path / "multi.jsonl"
    rows = [{"prompt": "Greet me.", "chosen": "Good morning!", "rejected": r} for r in ("Yo.", "What.", "Yo.")]
    path.write_text("\n".join(json.dumps(x) for x in rows) + "\n")
    r = run_extract(store, "jsonl", path, config)
    assert (r["added"], r["duplicates"]) == (2, 1)  # line 3 repeats line 1
    assert sorted(e.rejected for e in store.examples()) == ["What.", "Yo."]
    again = run_extract(store, "jsonl", path, config)
    assert (again["added"], again["unchanged"]) == (0, 3) and store.counts()["total"] == 2


def write_parquet(path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_preference_sets(store, config, tmp_path):
    """UltraFeedback-binarized, Orca DPO pairs (question/chosen/rejected with a system column), HH-RLHF and a KTO
    set with string labels, as Parquet files the way the Hub serves them."""
    def conv(q, a):
        return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]

    uf = write_parquet(tmp_path / "ultrafeedback.parquet", {
        "prompt": ["Why is the sky blue?", "Name a fruit.", "Count to two."],
        "chosen": [conv("Why is the sky blue?", "Air scatters blue light most."), conv("Name a fruit.", "Apple."),
                   conv("Count to two.", "One, two.")],
        "rejected": [conv("Why is the sky blue?", "It reflects the sea."), conv("Name a fruit.", "Apple."),
                     None],
        "messages": [conv("Why is the sky blue?", "Air scatters blue light most."), conv("Name a fruit.", "Apple."),
                     conv("Count to two.", "One, two.")],
        "score_chosen": [9.0, 5.0, 7.0], "score_rejected": [2.0, 5.0, 1.0]})
    r = run_extract(store, "dataset", uf, config)
    assert r["added"] == 1 and r["dataset"]["shape"] == "preference pairs (prompt + chosen + rejected)"
    assert skipped_by_line(r) == {"1": "'chosen' and 'rejected' are the same answer", "2": "'rejected' is empty"}
    assert r["skipped"][0]["source"] == f"{uf}:1"
    (ex,) = store.examples()
    assert ex.messages == conv("Why is the sky blue?", "Air scatters blue light most.")
    assert ex.rejected == "It reflects the sea."

    orca = write_parquet(tmp_path / "orca.parquet", {
        "system": ["You are terse.", ""], "question": ["Capital of Peru?", "Capital of Chile?"],
        "chosen": ["Lima.", "Santiago."], "rejected": ["Cusco, the old capital.", "Valparaíso."]})
    r = run_extract(store, "dataset", orca, config)
    assert r["added"] == 2 and r["dataset"]["shape"] == "preference pairs (question + chosen + rejected)"
    peru = next(e for e in store.examples() if e.source == "dataset:orca.parquet:0")
    assert peru.messages == turns(("system", "You are terse."), ("user", "Capital of Peru?"),
                                  ("assistant", "Lima.")) and peru.rejected == "Cusco, the old capital."

    hh = write_parquet(tmp_path / "hh.parquet", {
        "chosen": ["\n\nHuman: Tea or coffee?\n\nAssistant: Tea, brewed for three minutes."],
        "rejected": ["\n\nHuman: Tea or coffee?\n\nAssistant: Whatever."]})
    r = run_extract(store, "dataset", hh, config)
    assert r["added"] == 1 and r["dataset"]["shape"] == "preference pairs (chosen + rejected)"

    kto = write_parquet(tmp_path / "kto.parquet", {
        "prompt": ["Thank the team.", "Decline politely.", "Say bye."],
        "completion": ["Thank you all, great work.", "No.", "Bye!"], "label": ["true", "0", "maybe"]})
    r = run_extract(store, "dataset", kto, config)
    assert r["added"] == 2 and r["dataset"]["shape"] == "KTO labels (prompt + completion + label)"
    assert skipped_by_line(r) == {"2": "'label' is 'maybe', not true or false"}
    labels = {e.messages[-1]["content"]: e.label for e in store.examples() if e.source.startswith("dataset:kto")}
    assert labels == {"Thank you all, great work.": True, "No.": False}

    total = store.counts()["total"]
    for path in (uf, orca, hh, kto):
        assert run_extract(store, "dataset", path, config)["added"] == 0
    assert store.counts()["total"] == total == 6


def test_forge_list_and_show_mark_pairs_and_labels(tmp_path):
    """`forge list` marks a pair ⇄ and a KTO label +/-, keeping its columns; --json carries rejected and label."""
    ws = tmp_path / "ws"
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        {"prompt": "Capital of Italy?", "chosen": "Rome.", "rejected": "Milan."},
        {"prompt": "Wish me luck.", "completion": "Good luck!", "label": True},
        {"prompt": "Wish me luck.", "completion": "Luck is a myth.", "label": False},
        {"input": "Capital of Spain?", "output": "Madrid."}]) + "\n")
    runner = CliRunner()

    def forge(*args):
        result = runner.invoke(main, ["--workspace", str(ws), *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert json.loads(forge("extract", "jsonl", str(path), "--json"))["added"] == 4
    lines = forge("list").splitlines()
    assert lines[0].endswith("'Capital of Italy?'  ⇄ pair") and lines[0].split()[1] == "pending"
    assert lines[1].endswith("+ desirable") and lines[2].endswith("- undesirable")
    assert lines[3].endswith("'Capital of Spain?'")  # a plain example's line is as it was
    rows = json.loads(forge("list", "--json"))
    assert rows[0]["rejected"] == "Milan." and rows[0]["messages"][-1]["content"] == "Rome."
    assert [r.get("label") for r in rows] == [None, True, False, None]
    assert "rejected" not in rows[3] and "label" not in rows[3]
    shown = forge("show", str(rows[0]["id"]))
    assert "--- assistant (chosen) ---\nRome." in shown and "--- rejected ---\nMilan." in shown


def test_random_preference_records_never_raise(tmp_path_factory):
    """Whatever the values under chosen/rejected/prompt/completion/label (text, transcripts, turns with odd roles,
    null, numbers, nested objects), each record is an example with its meta or a skip with a reason."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from forge.data.extract.jsonl import extract_jsonl

    text = st.one_of(st.text(max_size=20), st.sampled_from(["", " ", "\n\nHuman: hi\n\nAssistant: yo",
                                                              "Human: hi\nAssistant:", "\n\nAssistant: x"]))
    turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "human", "x"]),
                                  "content": st.one_of(text, st.none())})
    value = st.one_of(text, st.none(), st.integers(-1, 2), st.booleans(), st.lists(turn, max_size=3),
                      st.dictionaries(st.text(max_size=3), text, max_size=2))
    keys = st.sampled_from(["prompt", "chosen", "rejected", "completion", "label", "system", "messages"])

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.dictionaries(keys, value, max_size=5), min_size=1, max_size=6))
    def check(records):
        path = tmp_path_factory.mktemp("prefs") / "p.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
        r = extract_jsonl(path, 10**6, 10**6)
        assert len(r.items) + len(r.skipped) >= len([x for x in records if x])
        for it in r.items:
            assert it["messages"][-1]["role"] == "assistant" and it["messages"][-1]["content"].strip()
            meta = it.get("meta", {})
            if "rejected" in meta:
                assert meta["rejected"].strip() and meta["rejected"] != it["messages"][-1]["content"]
            if "label" in meta:
                assert isinstance(meta["label"], bool)
        for s in r.skipped:
            assert s.reason and "\n" not in s.reason

    check()
