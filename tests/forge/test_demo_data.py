"""The built-in demo data: each task's held-out file was not written from the training file's parts.

Reminders: no held-out sentence frame (the request with its task and time taken out) is a training frame, each
held-out frame has a word no training frame uses, and tasks and times are disjoint too; the answer format is the
same on both sides. Summaries: other speakers, other lines, risk markers copied byte for byte into the summary and
kept so through import and dataset export. Intent: other sentence frames (each with a word of its own) and other
entity values, the same intents and entity types, answers in /api/convert's schema. Every generator reproduces the
committed files exactly."""

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

DEMO = REPO / "data" / "demo"
MESSY = REPO / "tests" / "data" / "demo_markers_messy.jsonl"
WORD = re.compile(r"[\w']+")
MARKER = re.compile(r"\{\{RED:.*?\}\}", re.DOTALL)
SPEAKER = re.compile(r"^([A-Z][a-z]+): (.+)$")


def rows(name, folder=DEMO):
    return [json.loads(line) for line in (folder / name).read_text(encoding="utf-8").splitlines()]


def frame(row):
    """The request's words with the answer's task and time taken out: its sentence frame."""
    task, when = row["output"].split(" | ")
    rest = row["input"].lower()
    assert task in rest and when in rest, row  # the answer copies spans of the request
    return " ".join(WORD.findall(rest.replace(task, " ", 1).replace(when, " ", 1)))


def dialogue(row):
    user, assistant = row["messages"]
    assert user["role"] == "user" and assistant["role"] == "assistant"
    instruction, body = user["content"].split("\n\n", 1)
    return instruction, [SPEAKER.match(line).groups() for line in body.split("\n")], assistant["content"]


@pytest.mark.parametrize("script, names", [
    ("make_demo_data.py", ("reminders.jsonl", "reminders_heldout.jsonl", "reminders_heldout_blind.jsonl")),
    ("make_summaries_data.py", ("summaries.jsonl", "summaries_heldout.jsonl")),
    ("make_intent_data.py", ("intent.jsonl", "intent_heldout.jsonl")),
])
def test_generators_reproduce_the_committed_files(tmp_path, script, names):
    for run in ("a", "b"):
        subprocess.run([sys.executable, str(REPO / "scripts" / script), "--out", str(tmp_path / run)], check=True,
                       capture_output=True)
    for name in names:
        committed = (DEMO / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() == committed == (tmp_path / "b" / name).read_bytes(), name


def generator():
    """scripts/make_demo_data.py as a module (its lists of frames, words, tasks and times)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "scripts" / "make_demo_data.py")
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return gen


def written_frames(gen) -> set[str]:
    return {" ".join(WORD.findall(f.replace("{task}", " ").replace("{when}", " "))) for f in gen.TRAIN_FRAMES}


@pytest.mark.parametrize("held_file", ["reminders_heldout.jsonl", "reminders_heldout_blind.jsonl"])
def test_reminders_held_out_frames_are_not_training_frames(held_file):
    train, held = rows("reminders.jsonl"), rows(held_file)
    assert len(train) >= 500 and len(held) >= 80
    train_frames, held_frames = {frame(r) for r in train}, {frame(r) for r in held}
    # many frames on each side: the written training frames alone are 40+ (the carriers add hundreds more)
    assert len(train_frames & written_frames(generator())) >= 40 and len(held_frames) >= 15
    assert not train_frames & held_frames
    train_words = {w for f in train_frames for w in f.split()}
    for f in held_frames:  # a word of its own in every held-out frame: "note", "forget", "ping", "alexa", ...
        assert set(f.split()) - train_words, f
    # The training side puts the time first, last and in the middle (a model must learn where it sits).
    starts = {r["input"].lower().startswith(r["output"].split(" | ")[1]) for r in train}
    ends = {r["input"].lower().rstrip(".!?").endswith(r["output"].split(" | ")[1]) for r in train}
    assert starts == {True, False} and ends == {True, False}


def test_every_request_holds_its_task_and_time_once_and_no_other():
    """The answer is never ambiguous: its task and its time each occur once, as whole words, and no other task or
    time of the generator's lists is in the request (a carrier's borrowed words could otherwise bring one)."""
    gen = generator()
    once = lambda part, text: len(re.findall(rf"(?<![\w']){re.escape(part)}(?![\w'])", text))  # noqa: E731
    for name in ("reminders.jsonl", "reminders_heldout.jsonl", "reminders_heldout_blind.jsonl"):
        for r in rows(name):
            task, when = r["output"].split(" | ")
            text = r["input"].lower()
            assert once(task, text) == 1 and once(when, text) == 1, (name, r)
            others = [p for p in gen.TASKS + gen.TIMES if p not in task and p not in when and once(p, text)]
            assert not others, (name, r, others)


def test_reminders_training_has_carrier_frames_of_other_peoples_words():
    """About a third of the training requests wrap the task and the time in words from the summaries' dialogues,
    before, between and after them; the fifty written frames are the rest. Those words never say when, never are
    a number and never are a word only the held-out frames use."""
    gen = generator()
    train = rows("reminders.jsonl")
    carriers = [r for r in train if frame(r) not in written_frames(gen)]
    assert 0.25 <= len(carriers) / len(train) <= 0.45

    def apart(row):  # words between the task and the time
        task, when = row["output"].split(" | ")
        text = row["input"].lower()
        (a, b), (c, d) = sorted([(text.index(task), text.index(task) + len(task)),
                                 (text.index(when), text.index(when) + len(when))])
        return WORD.search(text[b:c]) is not None

    assert sum(map(apart, carriers)) >= 20  # between the task and the time too, not only around them
    time_words = gen.TIME_WORDS | {w for t in gen.TIMES for w in WORD.findall(t)}
    held_words = gen.HELD_ONLY_WORDS | gen.BLIND_ONLY_WORDS
    used = {w for r in carriers for w in frame(r).split()}
    assert len(used) >= 150  # many different words, not a few fillers
    assert not used & time_words and not used & held_words
    assert not any(c.isdigit() for w in used for c in w)


def test_reminders_tasks_times_disjoint_and_the_answer_format_the_same():
    train = rows("reminders.jsonl")
    held = rows("reminders_heldout.jsonl") + rows("reminders_heldout_blind.jsonl")
    parts = lambda rs, i: {r["output"].split(" | ")[i] for r in rs}  # noqa: E731
    assert not parts(train, 0) & parts(held, 0)
    assert not parts(train, 1) & parts(held, 1)
    answer = re.compile(r"^[a-z0-9' ,:-]+ \| [a-z0-9' :]+$")
    for r in train + held:
        assert set(r) == {"input", "output"} and answer.match(r["output"]), r


def test_summaries_held_out_shares_no_speaker_or_line_with_training():
    train, held = rows("summaries.jsonl"), rows("summaries_heldout.jsonl")
    assert len(train) >= 300 and len(held) >= 60
    tr, he = [dialogue(r) for r in train], [dialogue(r) for r in held]
    assert {i for i, _, _ in tr} == {i for i, _, _ in he}  # the same instruction: the same task
    speakers = lambda ds: {who for _, lines, _ in ds for who, _ in lines}  # noqa: E731
    assert not speakers(tr) & speakers(he)
    lines = lambda ds: {text for _, ls, _ in ds for _, text in ls}  # noqa: E731
    assert not lines(tr) & lines(he)
    for _, ls, summary in tr + he:
        said = " ".join(text for _, text in ls)
        assert 8 <= len(summary.split()) < len(said.split())
        # The summary is written, not lifted: none of its sentences is a line of the dialogue, nor are the first
        # lines (greetings and small talk) what it is about.
        for sentence in re.split(r"(?<=\.) ", summary):
            assert sentence.rstrip(".") not in said
        assert ls[0][1] not in summary


def test_summaries_carry_every_risk_marker_byte_for_byte():
    for name in ("summaries.jsonl", "summaries_heldout.jsonl"):
        with_markers = 0
        for r in rows(name):
            _, lines, summary = dialogue(r)
            said = MARKER.findall("\n".join(text for _, text in lines))
            assert MARKER.findall(summary) == said
            with_markers += bool(said)
        assert with_markers >= 10, name  # enough on each side that a model must learn to keep them


def test_markers_survive_import_and_dataset_export_byte_for_byte(tmp_path, store, config):
    from forge.data.dataset import export_dataset
    from forge.data.extract import run_extract

    source = tmp_path / "mix.jsonl"
    marked = [r for r in rows("summaries.jsonl") if "{{RED:" in r["messages"][1]["content"]][:20]
    source.write_text("".join(json.dumps(r) + "\n" for r in marked) + MESSY.read_text(encoding="utf-8"),
                      encoding="utf-8")
    expected = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        texts = ([m["content"] for m in rec["messages"]] if "messages" in rec else [rec["input"], rec["output"]])
        for t in texts:
            for m in MARKER.findall(t):
                expected[m] = expected.get(m, 0) + 1
    assert "{{RED:I  stopped\ttaking my   meds}}" in expected  # the messy file's odd spaces inside a marker

    report = run_extract(store, "jsonl", source, config)
    assert report["added"] == len(marked) + 4
    for i in store.ids(status="pending"):
        store.set_status(i, "approved")
    export_dataset(store, tmp_path / "ds", config)
    found = {}
    for split in ("train", "val", "test"):
        for r in rows(f"{split}.jsonl", tmp_path / "ds"):
            for m in r["messages"]:
                for marker in MARKER.findall(m["content"]):
                    found[marker] = found.get(marker, 0) + 1
    assert found == expected
    # and the text around them was normalised (CRLF, tabs, runs of spaces), so normalisation did run
    messy = next(e.messages[0]["content"] for e in store.examples() if "\nBo: " in e.messages[0]["content"])
    assert "\r" not in messy and "Ada: Hi. How are you?\nBo:" in messy


def intent_parts(row):
    """(intent, frame, {(type, value)}) of an intent row; every value is the exact text of a span of the request."""
    system, user, assistant = row["messages"]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    answer = json.loads(assistant["content"])
    values = [e["value"] for e in answer["entities"]]
    rest = user["content"]
    for v in values:
        assert v in rest, (rest, v)
    for v in sorted(values, key=len, reverse=True):
        rest = rest.replace(v, " ", 1)
    return answer["intent"], " ".join(WORD.findall(rest.lower())), {(e["type"], e["value"]) for e in answer["entities"]}


def test_intent_held_out_frames_and_values_are_not_training_ones():
    train, held = rows("intent.jsonl"), rows("intent_heldout.jsonl")
    assert len(train) >= 500 and len(held) >= 80
    tr, he = [intent_parts(r) for r in train], [intent_parts(r) for r in held]
    train_frames, held_frames = {f for _, f, _ in tr}, {f for _, f, _ in he}
    assert len(train_frames) >= 40 and len(held_frames) >= 15
    assert not train_frames & held_frames
    train_words = {w for f in train_frames for w in f.split()}
    for f in held_frames:  # a word of its own in every held-out frame: "umbrella", "rouse", "line", ...
        assert set(f.split()) - train_words, f
    # No held-out entity value is a training value, of any type; the intents and types are the same on both sides.
    values = lambda ps: {v for _, _, es in ps for _, v in es}  # noqa: E731
    assert not values(tr) & values(he)
    intents = lambda ps: {i for i, _, _ in ps}  # noqa: E731
    types = lambda ps: {t for _, _, es in ps for t, _ in es}  # noqa: E731
    assert intents(he) == intents(tr) and len(intents(tr)) >= 8
    assert types(he) <= types(tr)


def test_intent_answers_follow_the_convert_route_schema_and_prompt():
    import jsonschema

    from forge.config import CONVERT_TASK

    for r in rows("intent.jsonl") + rows("intent_heldout.jsonl"):
        system, _, assistant = r["messages"]
        assert system["content"] == CONVERT_TASK["system"]  # asked the way POST /api/convert asks
        answer = json.loads(assistant["content"])
        jsonschema.validate(answer, CONVERT_TASK["schema"])
        # one line, keys in a fixed order: the exact text a model must learn to write
        assert assistant["content"] == json.dumps(answer) and list(answer) == ["intent", "entities"]
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", answer["intent"]) and answer["entities"]
