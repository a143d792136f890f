"""Property tests: split proportions and disjointness, normalisation idempotence and marker preservation,
extraction idempotence."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge.config import ObsidianConfig
from forge.data.dataset import split
from forge.data.extract.obsidian import extract_vault
from forge.data.validate import MARKER_RE, normalize_text

hashes = st.lists(st.text(alphabet="0123456789abcdef", min_size=8, max_size=8), unique=True, max_size=300)
fractions = st.floats(min_value=0, max_value=0.45, allow_nan=False)


@given(hashes, fractions, fractions, st.integers(0, 2**31))
def test_split_is_disjoint_complete_proportional_and_seeded(keys, val, test, seed):
    parts = split(keys, val, test, seed)
    flat = parts["train"] + parts["val"] + parts["test"]
    assert sorted(flat) == sorted(keys)  # complete, and no key in two splits
    n = len(keys)
    if n >= 2:
        assert abs(len(parts["test"]) - n * test) <= 1 + (n * test > n - 1)
        assert abs(len(parts["val"]) - n * val) <= 1.5
        assert parts["train"]
    assert split(list(reversed(keys)), val, test, seed) == parts  # order of input never matters


text_chars = st.characters(codec="utf-8", exclude_categories=("Cs",))
marker = st.builds(lambda tag, body: "{{" + tag + ":" + body + "}}",
                   st.sampled_from(["RED", "AMBER", "NOTE"]),
                   st.text(alphabet=st.characters(codec="utf-8", exclude_characters="{}", exclude_categories=("Cs",)),
                           min_size=1, max_size=20))
prose = st.lists(st.one_of(st.text(text_chars, max_size=6), st.sampled_from([" ", "  ", "\n", "\r\n", "\t", "\u00a0", "```", "\n```py\n"])),
                 max_size=14).map("".join)
documents = st.lists(st.one_of(prose, marker), max_size=8).map("".join)


@given(documents)
def test_normalisation_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


@given(st.lists(st.tuples(prose, marker), min_size=1, max_size=5), prose)
def test_markers_survive_normalisation_verbatim(parts, tail):
    text = "".join(p + " " + m + " " for p, m in parts) + tail
    out = normalize_text(text)
    for m in MARKER_RE.findall(text):
        assert m in out


words = st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=40).filter(str.strip)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(words, min_size=1, max_size=6))
def test_extraction_is_idempotent(tmp_path_factory, bodies):
    root = tmp_path_factory.mktemp("vault")
    for i, b in enumerate(bodies):
        (root / f"n{i}.md").write_text(f"---\ntags: [reflection]\n---\n{b}\n")
    first = extract_vault(root, ObsidianConfig(), 10**6)
    second = extract_vault(root, ObsidianConfig(), 10**6)
    assert first.items == second.items
    assert normalize_text(first.items[0]["messages"][1]["content"]) == first.items[0]["messages"][1]["content"]
