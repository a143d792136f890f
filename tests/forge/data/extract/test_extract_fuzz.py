"""No input can make an extractor raise: random frontmatter keys and values (as YAML a person or a plugin writes
it, and as broken YAML), random encodings and raw bytes go through the vault, CSV and JSONL extractors. Whatever a
parser library raises inside one note, row or line must become a skip with its path, never an exception that
stops the import."""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge.config import CsvConfig, ObsidianConfig
from forge.data.extract.jsonl import extract_jsonl
from forge.data.extract.obsidian import extract_vault
from forge.data.extract.tabular import extract_csv

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1", "utf-16-le"]

keys = st.one_of(st.sampled_from(["content", "handler", "tags", "tag", "title", "prompt", "aliases", "date",
                                  "metadata", "text", "__class__", "yes", "null", "123"]),
                 st.text(min_size=1, max_size=12))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
                    st.dates(), st.datetimes())
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=10)
raw_yaml = st.one_of(
    st.dictionaries(keys, values, max_size=6).map(lambda d: yaml.safe_dump(d, allow_unicode=True, default_flow_style=None)),
    st.sampled_from(["date: 2026-13-45\n", "\ttabbed: x\n", "a: [unclosed\n", "- a\n- list\n", "!!python/object:os.system x\n",
                     "key: *undefined_alias\n", "? complex\n: key\n", "tags: [2026, 42, '#x']\n", ": :\n", "---\n---\n"]),
    st.text(max_size=60),
)
bodies = st.one_of(st.text(max_size=200), st.sampled_from(["# H1\n\n## H2\ntext", "```\n# not a heading\n```", "#tag only",
                                                           "[[link|alias]] ![[embed.png]]", "\x00\x01\x02", "",
                                                           "a %%x%% b ^id-1\n%%\n#t\n", "x ^y `z` %%", "```\n%%\n```",
                                                           "tags:: a, [[b]]\n- k:: v\n-\n- text\n  id:: 1"]))


def write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@FAST
@given(st.lists(st.tuples(raw_yaml, bodies, st.sampled_from(ENCODINGS)), min_size=1, max_size=4),
       st.binary(max_size=300), st.booleans())
def test_vault_extraction_never_raises(tmp_path_factory, notes, junk, logseq):
    root = tmp_path_factory.mktemp("vault")
    if logseq:  # a Logseq graph: its pages' properties are read, logseq/ is left out
        write(root / "logseq" / "config.edn", b"{}")
    for i, (fm, body, enc) in enumerate(notes):
        text = f"---\n{fm}---\n{body}\n" if i % 2 == 0 else f"---\n{fm}\n---\n{body}"
        write(root / f"d{i % 2}" / f"n{i}.md", text.encode(enc, errors="replace"))
    write(root / "junk.md", junk)
    for cfg in (ObsidianConfig(include_tags=[]), ObsidianConfig(), ObsidianConfig(include_tags=[], max_tokens=80)):
        r = extract_vault(root, cfg, 10**6, count=lambda t: len(t.encode("utf-8")) // 2)
        files = len(notes) + 1
        assert len({it["note_path"] for it in r.items}) + len({s.source for s in r.skipped}) >= files
        for it in r.items:
            assert it["messages"][1]["content"].strip()
            json.dumps(it, default=str)  # storable


cells = st.one_of(st.text(max_size=40), st.sampled_from(['"', '""', '\n', '\r\n', ',', ';', '\t', '\x00', 'é', '{{RED:x}}']))


@FAST
@given(st.lists(st.lists(cells, min_size=0, max_size=5), max_size=8), st.sampled_from(ENCODINGS),
       st.sampled_from([",", ";", "\t", "|"]), st.binary(max_size=200))
def test_csv_extraction_never_raises(tmp_path_factory, rows, enc, delim, junk):
    d = tmp_path_factory.mktemp("csv")
    text = "\n".join(delim.join(r) for r in [["prompt", "response"], *rows])
    write(d / "a.csv", text.encode(enc, errors="replace"))
    write(d / "b.csv", junk)
    for name in ("a.csv", "b.csv"):
        for cols in ({}, {"prompt_column": "prompt", "response_column": "nope"}):
            extract_csv(d / name, CsvConfig(), 10**6, 10**6, **cols)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["messages", "role", "content", "instruction", "input", "output",
                                                        "instances", "prompt", "completion", "choices", "message",
                                                        "examples", "from", "value", "x", "mapping", "current_node",
                                                        "parent", "children", "author", "parts", "content_type",
                                                        "recipient", "chat_messages", "sender", "text", "type",
                                                        "context", "response", "query", "title", "name"]),
                                                       inner, max_size=4)),
                           max_leaves=12)


@FAST
@given(st.lists(st.one_of(json_values.map(json.dumps), st.text(max_size=40), st.just("```json")), max_size=8),
       st.sampled_from(ENCODINGS), st.binary(max_size=200))
def test_jsonl_extraction_never_raises(tmp_path_factory, lines, enc, junk):
    d = tmp_path_factory.mktemp("jsonl")
    write(d / "a.jsonl", "\n".join(lines).encode(enc, errors="replace"))
    write(d / "b.jsonl", junk)
    for name in ("a.jsonl", "b.jsonl"):
        r = extract_jsonl(d / name, 10**6, 10**6)
        for it in r.items:
            assert all(isinstance(m["content"], str) for m in it["messages"])


# ---- the formats users have: Self-Instruct, TSV, dataset files ---------------------------------------------------
maybe_text = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["", "   ", "\x00", "é", "{{RED:x}}"]))
any_value = st.one_of(maybe_text, st.integers(), st.lists(maybe_text, max_size=2), st.booleans(),
                      st.dictionaries(st.sampled_from(["input", "output", "x"]), maybe_text, max_size=3))
self_instruct = st.fixed_dictionaries(
    {"instruction": maybe_text, "instances": st.one_of(st.none(), any_value, st.lists(any_value, max_size=4))},
    optional={"is_classification": st.booleans(), "id": st.text(max_size=8), "system": maybe_text})


@FAST
@given(st.lists(self_instruct, max_size=6), st.sampled_from(ENCODINGS))
def test_self_instruct_records_never_raise(tmp_path_factory, records, enc):
    d = tmp_path_factory.mktemp("si")
    write(d / "seed.jsonl", "\n".join(json.dumps(r) for r in records).encode(enc, errors="replace"))
    r = extract_jsonl(d / "seed.jsonl", 10**6, 10**6)
    for it in r.items:
        assert it["messages"][-1]["role"] == "assistant" and it["messages"][-1]["content"].strip()


@FAST
@given(st.lists(st.lists(cells, min_size=0, max_size=5), max_size=8), st.sampled_from(ENCODINGS),
       st.booleans())
def test_tsv_extraction_never_raises(tmp_path_factory, rows, enc, bom):
    d = tmp_path_factory.mktemp("tsv")
    text = "\n".join("\t".join(r) for r in [["prompt", "response"], *rows])
    write(d / "a.tsv", (b"\xef\xbb\xbf" if bom else b"") + text.encode(enc, errors="replace"))
    for cols in ({}, {"prompt_column": "PROMPT", "response_column": "response", "system_column": "nope"}):
        extract_csv(d / "a.tsv", CsvConfig(), 10**6, 10**6, **cols)


turns = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "human", "gpt", "x"]),
                                        "content": maybe_text}), max_size=4)
instances = st.lists(st.fixed_dictionaries({"input": maybe_text, "output": maybe_text}), max_size=3)
COLUMN_VALUES = {"messages": st.one_of(st.none(), turns), "conversations": st.one_of(st.none(), turns),
                 "instances": st.one_of(st.none(), instances), "label": st.one_of(st.none(), st.integers(0, 3)),
                 "tags": st.one_of(st.none(), st.lists(maybe_text, max_size=2))}
COLUMNS = ["messages", "conversations", "instruction", "input", "output", "instances", "prompt", "response",
           "question", "answer", "text", "label", "system", "tags", "x"]


@st.composite
def dataset_tables(draw):
    names = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=5, unique=True))
    n = draw(st.integers(0, 6))
    return {c: [draw(COLUMN_VALUES.get(c, maybe_text)) for _ in range(n)] for c in names}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(dataset_tables(), st.binary(max_size=300), st.data())
def test_dataset_extraction_never_raises(tmp_path_factory, columns, junk, data):
    """Parquet, Feather and Arrow-stream files of random columns, and junk under those names: each row becomes an
    example or a skip; the only exception is ExtractError (one line) for columns that name no known shape."""
    import pyarrow as pa
    import pyarrow.feather as feather
    import pyarrow.parquet as pq

    from forge.data.extract.common import ExtractError
    from forge.data.extract.dataset import extract_dataset

    d = tmp_path_factory.mktemp("ds")
    table = pa.table(columns)
    pq.write_table(table, d / "a.parquet")
    feather.write_feather(table, str(d / "b.feather"))
    with pa.ipc.new_stream(str(d / "c.arrow"), table.schema) as w:
        w.write_table(table)
    for name in ("junk.parquet", "junk.arrow"):
        write(d / name, junk)
    names = list(columns)
    flags = data.draw(st.one_of(st.just({}), st.fixed_dictionaries(
        {"prompt_column": st.sampled_from(names), "response_column": st.sampled_from(names)},
        optional={"system_column": st.sampled_from(names)})))
    for name in ("a.parquet", "b.feather", "c.arrow", "junk.parquet", "junk.arrow", "."):
        try:
            r = extract_dataset(d / name, 10**4, **flags)
        except ExtractError as e:
            assert "\n" not in str(e)
            continue
        assert r.read + len(r.skipped) >= 0
        for it in r.items:
            assert all(isinstance(m["content"], str) for m in it["messages"])
            assert it["messages"][-1]["content"].strip()
            json.dumps(it)


# ---- chat exports: trees with cycles, dangling parents, odd messages -----------------------------------------------
node_ids = st.sampled_from(["a", "b", "c", "d"])
odd = st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2), st.dictionaries(
    st.text(max_size=3), st.text(max_size=3), max_size=2))
gpt_message = st.one_of(odd, st.fixed_dictionaries({
    "author": st.one_of(odd, st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool",
                                                                            "x"])})),
    "content": st.one_of(odd, st.fixed_dictionaries({
        "content_type": st.sampled_from(["text", "multimodal_text", "code", "execution_output"]),
        "parts": st.one_of(odd, st.lists(st.one_of(maybe_text, odd), max_size=3))})),
    "recipient": st.sampled_from(["all", "python", None]),
    "metadata": st.one_of(odd, st.fixed_dictionaries({"is_visually_hidden_from_conversation": st.booleans()}))}))
gpt_tree = st.dictionaries(node_ids, st.one_of(odd, st.fixed_dictionaries({
    "message": gpt_message, "parent": st.one_of(node_ids, odd), "children": st.one_of(odd, st.lists(node_ids))})),
    max_size=4)
gpt_conv = st.fixed_dictionaries({"mapping": gpt_tree, "current_node": st.one_of(node_ids, odd),
                                  "title": st.one_of(maybe_text, odd)})
claude_conv = st.fixed_dictionaries({"name": maybe_text, "chat_messages": st.lists(st.one_of(odd, st.fixed_dictionaries({
    "sender": st.sampled_from(["human", "assistant", "x"]), "text": st.one_of(maybe_text, odd),
    "content": st.one_of(odd, st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "tool_use"]),
                                                              "text": st.one_of(maybe_text, odd)}), max_size=3))})),
    max_size=4)})


@FAST
@given(st.lists(st.one_of(gpt_conv, claude_conv), max_size=5))
def test_chat_exports_never_raise_and_every_example_starts_with_the_person(tmp_path_factory, convs):
    d = tmp_path_factory.mktemp("export")
    write(d / "conversations.json", json.dumps(convs).encode())
    r = extract_jsonl(d / "conversations.json", 10**6, 10**6)
    assert len(r.items) + len(r.skipped) >= len(convs)
    for it in r.items:
        roles = [m["role"] for m in it["messages"] if m["role"] != "system"]
        assert roles[0] == "user" and "assistant" in roles and all(m["content"].strip() for m in it["messages"])
