import json

from forge.data.extract.jsonl import extract_jsonl


def run(path, line_limit=100_000):
    return extract_jsonl(path, 10_000_000, line_limit)


def pairs(result):
    return [(it["messages"][-2]["content"], it["messages"][-1]["content"]) for it in result.items]


def test_common_shapes(tmp_path):
    lines = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
                      {"role": "assistant", "content": "a1"}]},
        {"instruction": "q2", "input": "ctx", "output": "a2"},
        {"input": "q3", "output": "a3"},
        {"prompt": "q4", "completion": "a4"},
        {"conversations": [{"from": "human", "value": "q5"}, {"from": "gpt", "value": "a5"}]},
    ]
    p = tmp_path / "x.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = run(p)
    assert pairs(r) == [("q1", "a1"), ("q2\n\nctx", "a2"), ("q3", "a3"), ("q4", "a4"), ("q5", "a5")]
    assert r.items[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [it["line"] for it in r.items] == [1, 2, 3, 4, 5]


def test_chat_completion_objects_holding_examples(tmp_path):
    content = 'Here you go:\n```json\n[{"input": "remind me", "output": "ok | now"}, {"input": "b", "output": "c"}]\n```'
    obj = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
    p = tmp_path / "gen.jsonl"
    p.write_text(json.dumps(obj) + "\n")
    assert pairs(run(p)) == [("remind me", "ok | now"), ("b", "c")]


def test_fenced_json_in_a_text_file(tmp_path):
    p = tmp_path / "reply.txt"
    p.write_text('Sure! Examples:\n```json\n{"input": "a", "output": "b"}\n{"input": "c", "output": "d"}\n```\n'
                 '```json\n{\n  "prompt": "e",\n  "completion": "f"\n}\n```\n')
    r = run(p)
    assert pairs(r) == [("a", "b"), ("c", "d"), ("e", "f")]
    assert r.skipped[0].source.endswith(":1") and "not valid JSON" in r.skipped[0].reason


def test_bad_lines_are_reported_with_line_numbers_and_never_abort(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"input": "a", "output": "b"}\r\n{broken\r\n{"foo": 1}\r\n'
                  + '{"input": "caf\u00e9", "output": "ok"}\r\n'.encode("cp1252") + b"\r\n")
    r = run(p)
    assert pairs(r) == [("a", "b"), ("caf\u00e9", "ok")]
    reasons = {s.source.rsplit(":", 1)[1]: s.reason for s in r.skipped}
    assert "not valid JSON" in reasons["2"] and "not a known example shape (has: foo)" in reasons["3"]


def test_json_array_file_and_line_limit(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps([{"input": "a", "output": "b"}]))
    assert pairs(run(p)) == [("a", "b")]
    q = tmp_path / "y.jsonl"
    q.write_text(json.dumps({"input": "x" * 500, "output": "y"}) + "\n" + json.dumps({"input": "s", "output": "t"}))
    r = run(q, line_limit=100)
    assert pairs(r) == [("s", "t")] and "limit" in r.skipped[0].reason


def test_invalid_roles_are_not_a_known_shape(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"messages": [{"role": "wizard", "content": "x"}]}) + "\n")
    r = run(p)
    assert r.items == [] and r.skipped
