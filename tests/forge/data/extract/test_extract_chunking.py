"""A note too long for one example is split into examples that each fit the token budget, in the note's order,
losing no text, whatever the note looks like: paragraphs, lists, lines without punctuation, a paragraph with no
break at all, code with tabs, odd spaces, emoji and an unbroken word longer than the budget. The split counts
each section once and packs by token offsets; it must choose the chunks that counting every candidate would."""

from __future__ import annotations

import random
import re

import pytest

from forge.config import ObsidianConfig
from forge.data.extract.common import Extraction, chatgpt_turns
from forge.data.extract.obsidian import note_to_items
from forge.data.tokens import ByteCounter, token_counter

WORDS = ("we go to the garden and plant beans today café naïve déjà-vu 漢字 emoji 🌱 [[Beds|the beds]] "
         "it's don't 2026 x=1 #idea").split()
HEADING = re.compile(r"^#{1,6} ")


def messy_note(seed: int) -> str:
    rng = random.Random(seed)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    blocks = ["---\ntags: [garden]\n---\n# Garden log", "A preamble line."]
    for day in range(rng.randint(3, 6)):
        blocks.append(f"{'#' * rng.randint(2, 4)} Day {day}")
        for _ in range(rng.randint(2, 6)):
            kind = rng.randrange(8)
            if kind == 0:
                blocks.append("\n".join(f"{'  ' * rng.randint(0, 2)}- {words(rng.randint(1, 8))}"
                                        for _ in range(rng.randint(2, 15))))
            elif kind == 1:  # lines without punctuation: packed line by line
                blocks.append("\n".join(words(rng.randint(3, 12)) for _ in range(rng.randint(5, 40))))
            elif kind == 2:  # one paragraph with no break and no sentence end: packed word by word
                blocks.append(words(rng.randint(60, 400)))
            elif kind == 3:
                blocks.append("```\n" + "\n".join(f"\tx = {i}  # two  spaces\t" for i in range(rng.randint(3, 30)))
                              + "\n```")
            elif kind == 4:  # odd spaces between sentences
                blocks.append(rng.choice(["\u3000", "\u00a0", "\t", "  "]).join(
                    words(rng.randint(3, 12)) + rng.choice(".!?…") for _ in range(rng.randint(5, 30))))
            elif kind == 5 and rng.random() < 0.3:  # a word longer than the budget: kept whole
                blocks.append("https://example.com/" + "a" * rng.randint(400, 900))
            else:
                blocks.append(" ".join(words(rng.randint(4, 15)) + "." for _ in range(rng.randint(1, 12))))
    return "\n\n".join(blocks) + "\n"


def word_sequence(text: str) -> list[str]:
    """The note's words in order; heading lines left out (a chunk's heading goes to its prompt)."""
    return [w for line in text.split("\n") if not HEADING.match(line) for w in line.split()]


class NotAdditive:
    """A counter whose counts do not add up (a token per word, and one more per 50 characters of the whole text):
    a piece's count from the whole text's offsets falls short, so chunks packed by them must be counted again."""

    additive = False
    max_token_bytes = None

    def __call__(self, text: str) -> int:
        return len(self.spans(text))

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+", text)] + [(len(text), len(text))] * (len(text) // 50)


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    return token_counter(tmp_path_factory.mktemp("ws"))  # the bundled base's tokenizer, prepared once


def split(text: str, count, max_tokens: int) -> tuple[list[dict], Extraction]:
    result = Extraction()
    return note_to_items("Garden log.md", text, ObsidianConfig(include_tags=[], max_tokens=max_tokens), result,
                         count), result


@pytest.mark.parametrize("seed", range(6))
def test_a_long_messy_note_splits_into_examples_that_fit_in_order_losing_no_text(smol, seed):
    text = messy_note(seed)
    (whole,) = split(text, None, 128)[0]
    prompt, answer = whole["messages"][0]["content"], whole["messages"][1]["content"]
    for max_tokens in (128, 300):
        budget = max(max_tokens - 40 - len(prompt.encode("utf-8")), 32)
        for count in (smol, ByteCounter(), NotAdditive()):
            items, result = split(text, count, max_tokens)
            answers = [it["messages"][1]["content"] for it in items]
            assert len(items) > 1 and result.chunked["examples"] == len(items)
            for a in answers:  # each fits, unless it is one word longer than the budget, kept whole
                assert count(a) <= budget or len(a.split()) == 1, (type(count).__name__, a[:80])
            assert word_sequence("\n".join(answers)) == word_sequence(answer), type(count).__name__
            assert [it["line"] for it in items] == sorted(it["line"] for it in items)
        # Packing by token offsets chooses the chunks that counting every candidate chooses.
        exact, _ = split(text, lambda t: smol(t), max_tokens)
        assert split(text, smol, max_tokens)[0] == exact


class Tally:
    """The tokenizer, tallying how many characters it is asked to read."""

    def __init__(self, count) -> None:
        self.count, self.read = count, 0
        self.additive, self.max_token_bytes = count.additive, count.max_token_bytes

    def __call__(self, text: str) -> int:
        self.read += len(text)
        return self.count(text)

    def spans(self, text: str) -> list[tuple[int, int]]:
        self.read += len(text)
        return self.count.spans(text)


def test_a_long_note_is_read_by_the_tokenizer_about_once(smol):
    """Packing by offsets, not by counting each growing candidate afresh: a note of long sections (paragraphs, a
    paragraph without a break, lines without punctuation) costs about one tokenizer pass, where counting every
    candidate read it hundreds of times over."""
    rng = random.Random(7)
    sections = []
    for day in range(8):
        words = [rng.choice(WORDS) for _ in range(3000)]
        body = [" ".join(words[:1000]), "\n".join(" ".join(words[i:i + 10]) for i in range(1000, 2000, 10)),
                "\n\n".join(" ".join(words[i:i + 40]) + "." for i in range(2000, 3000, 40))]
        sections.append(f"## Day {day}\n\n" + "\n\n".join(body))
    text = "# Log\n\n" + "\n\n".join(sections)
    tally = Tally(smol)
    items, _ = split(text, tally, 256)
    assert len(items) > 50
    assert tally.read <= 2 * len(text), tally.read / len(text)


def test_an_answer_split_around_thousands_of_tool_calls_reads_as_one_answer():
    mapping = {"root": {"message": None, "parent": None, "children": ["u"]},
               "u": {"parent": "root", "message": {"author": {"role": "user"},
                                                   "content": {"content_type": "text", "parts": ["Go on."]}}}}
    prev = "u"
    for i in range(3000):
        for role, recipient in (("assistant", "all"), ("assistant", "browser"), ("tool", "all")):
            nid = f"n{len(mapping)}"
            mapping[nid] = {"parent": prev, "message": {"author": {"role": role}, "recipient": recipient,
                                                        "content": {"content_type": "text", "parts": [f"part {i}"]}}}
            prev = nid
    turns = chatgpt_turns({"mapping": mapping, "current_node": prev})
    assert [m["role"] for m in turns] == ["user", "assistant"]
    assert turns[1]["content"] == "\n\n".join(f"part {i}" for i in range(3000))


def test_the_voice_recipe_imports_notes_in_chunks_that_fit_its_length(tmp_path, config, store):
    """`forge extract obsidian --recipe voice` (and the import dialog's voice checkbox) splits notes at the recipe's
    note_tokens, so every chunk trains whole at the recipe's max_seq_len; the default split keeps them longer."""
    import json

    from click.testing import CliRunner

    from forge.cli import main
    from forge.train.recipes import RECIPES

    vault = tmp_path / "vault"
    vault.mkdir()
    rng = random.Random(3)
    words = "the diary of a busy clerk who walks to the office and dines with friends at night".split()
    for n in range(3):
        paras = ["\n".join(" ".join(rng.choice(words) for _ in range(60)) for _ in range(2)) for _ in range(12)]
        (vault / f"1666-01-0{n + 1}.md").write_text("\n\n".join(paras), encoding="utf-8")
    recipe = RECIPES["voice"]
    ws = str(config.workspace_path())
    default = CliRunner().invoke(main, ["--workspace", ws, "extract", "obsidian", str(vault), "--all-notes", "--json"])
    assert default.exit_code == 0, default.output
    n_default = json.loads(default.output)["added"]
    ws2 = str(tmp_path / "ws2")
    voice = CliRunner().invoke(main, ["--workspace", ws2, "extract", "obsidian", str(vault), "--all-notes",
                                      "--recipe", "voice", "--json"])
    assert voice.exit_code == 0, voice.output
    assert json.loads(voice.output)["added"] > n_default
    from forge.store import Store

    count = token_counter(ws2)
    chunks = [ex.messages[-1]["content"] for ex in Store.for_workspace(ws2).examples()]
    assert max(count(c) for c in chunks) <= recipe.note_tokens
    assert recipe.note_tokens < recipe.spec["max_seq_len"]  # the chunk and its prompt fit the recipe's length
