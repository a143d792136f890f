import csv

from forge.config import CsvConfig
from forge.data.extract.tabular import extract_csv


def run(path, **kw):
    return extract_csv(path, kw.pop("cfg", CsvConfig()), 10_000_000, kw.pop("field", 5_000_000), **kw)


def test_detects_prompt_response_columns_and_reports_bad_rows(tmp_path):
    p = tmp_path / "pairs.csv"
    p.write_text("prompt,response\nhello,hi there\n,missing prompt\n\"multi\nline\",ok\nlast,one\n")
    r = run(p)
    assert [it["messages"][0]["content"] for it in r.items] == ["hello", "multi\nline", "last"]
    assert r.skipped[0].source == f"{p}:3" and "empty" in r.skipped[0].reason
    assert r.items[2]["line"] == 6  # line numbers count the embedded newline


def test_encodings_utf8_bom_and_cp1252(tmp_path):
    text = "question,answer\nWhat is a caf\u00e9?,A place for coffee \u2014 and 3 \u20ac pastries\n"
    for name, data in [("utf8.csv", text.encode("utf-8")), ("bom.csv", b"\xef\xbb\xbf" + text.encode("utf-8")),
                       ("win.csv", text.encode("cp1252"))]:
        (tmp_path / name).write_bytes(data)
        r = run(tmp_path / name)
        assert r.items[0]["messages"] == [{"role": "user", "content": "What is a caf\u00e9?"},
                                          {"role": "assistant", "content": "A place for coffee \u2014 and 3 \u20ac pastries"}], name


def test_transcript_to_summary_with_template_and_huge_fields(tmp_path):
    p = tmp_path / "sessions.csv"
    big = "word " * 60_000  # 300 kB: beyond the csv module's default 128 kB field limit
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session", "transcript", "summary"])
        w.writerow(["1", big, "Client discussed {{RED:sleep problems}}."])
    cfg = CsvConfig(prompt_template="Summarise this session:\n\n{prompt}")
    r = run(p, cfg=cfg)
    user, answer = r.items[0]["messages"]
    assert user["content"].startswith("Summarise this session:\n\nword word")
    assert answer["content"] == "Client discussed {{RED:sleep problems}}."


def test_instruction_input_output_and_system_column(tmp_path):
    p = tmp_path / "alpaca.csv"
    p.write_text("instruction,input,output,sys\nTranslate,bonjour,hello,You translate.\nSay hi,,hi,\n")
    r = run(p, system_column="sys")
    assert r.items[0]["messages"] == [{"role": "system", "content": "You translate."},
                                      {"role": "user", "content": "Translate\n\nbonjour"},
                                      {"role": "assistant", "content": "hello"}]
    assert r.items[1]["messages"][0] == {"role": "user", "content": "Say hi"}


def test_configured_columns_and_unknown_column_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a;b\nq1;r1\n")
    assert run(p, prompt_column="a", response_column="b").items[0]["messages"][1]["content"] == "r1"
    r = run(p, prompt_column="nope", response_column="b")
    assert r.items == [] and "'nope' not found" in r.skipped[0].reason and "a, b" in r.skipped[0].reason
    r = run(p)
    assert "--prompt-column" in r.skipped[0].reason


def test_field_over_limit_is_reported_not_fatal(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("prompt,response\nshort,ok\n" + "big," + "y" * 5000 + "\nafter,fine\n")
    r = run(p, field=1000)
    assert [it["messages"][0]["content"] for it in r.items][0] == "short"
    assert any("bad CSV row" in s.reason for s in r.skipped)
