"""Backtranslation against a scripted OpenAI-compatible server on loopback: prompts written for templated notes,
the notes kept byte for byte, undo, provenance; retries, bad replies, caps, resume, and what is never touched.
(The same against the real companion serving the bundled model: tests/companion/test_backtranslate.py.)"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from forge.config import Config
from forge.data import curate
from forge.data.extract import run_extract
from forge.llm import backtranslate as bt
from forge.store import Store
from tests.conftest import REPO, free_port
from tests.forge.llm.llm_server import scripted_server

VAULT = Path(__file__).resolve().parents[2] / "data" / "vaults" / "backtranslate"
TEMPLATE_TITLES = ["Keep the old car", "Ship the beta", "Sleep experiment", "Sourdough basics"]


def question(n: int, body: dict) -> tuple:
    """A plausible reply, wrapped the way models wrap them: a label, quotes, then an answer nobody asked for."""
    title = re.findall(r"Note \(([^)]*)\):", body["messages"][-1]["content"])[-1]
    return "json", f'Question: "What did I write about {title.lower()}?"\n\nAnswer: I wrote that…'


@pytest.fixture
def server():
    with scripted_server(question) as start:
        yield start


def cfg(store, **backtranslate) -> Config:
    return Config(workspace=str(store.path.parent),
                  generate={"concurrency": 1, "timeout_s": 1.0, "backoff_base_s": 0.05, "backoff_max_s": 0.2,
                            "max_retries": 3},
                  backtranslate=backtranslate)


@pytest.fixture
def vault_store(store, config):
    run_extract(store, "obsidian", VAULT, config)
    return store


def by_title(store: Store) -> dict:
    return {e.meta["title"]: e for e in store.examples()}


def asked_titles(script) -> list[str]:
    return [re.findall(r"Note \(([^)]*)\):", r["body"]["messages"][-1]["content"])[-1] for r in script.requests]


def test_prompts_written_notes_kept_and_undo_restores_the_template(server, vault_store):
    url, script = server([])
    before = by_title(vault_store)
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m")
    assert (r.done, r.failed, r.remaining) == (4, 0, 0)
    assert r.skipped == {"own-prompt": 1}  # Lease.md has its own frontmatter prompt
    after = by_title(vault_store)
    for title in TEMPLATE_TITLES:
        old, new = before[title], after[title]
        assert new.messages[1]["content"] == old.messages[1]["content"]  # the note, byte for byte
        assert new.messages[0]["content"] == f"What did I write about {title.lower()}?"  # label, quotes, answer gone
        assert new.status == "pending" and new.edited
        p = bt.provenance(vault_store, new)
        assert p["model"] == "m" and p["host"] == url.split("/")[2] and p["template"] == "default"
        assert p["replaced"] == "extract.obsidian.prompt_template" and p["at"]
        assert "prompt written by m" in bt.describe_provenance(p)
    assert after["Lease"].messages == before["Lease"].messages and not after["Lease"].edited
    # The note went out with the default instruction; the reply was asked to be short and sober.
    sent = script.requests[0]["body"]
    assert sent["max_tokens"] == 96 and sent["temperature"] == 0.3 and sent["model"] == "m"
    assert before["Keep the old car"].messages[1]["content"] in sent["messages"][0]["content"]
    log = vault_store.decisions()
    assert [d["action"] for d in log[:4]] == ["backtranslate"] * 4
    assert json.loads(log[0]["reason"])["model"] == "m"
    # Undo takes the latest one back to its template; its provenance is gone with it.
    undone = vault_store.undo()
    ex = vault_store.get(undone["example_ids"][0])
    assert ex.messages == before[ex.meta["title"]].messages and not ex.edited and ex.status == "pending"
    assert bt.provenance(vault_store, ex) is None
    # A re-run asks only for the one that carries the template again.
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m")
    assert r.done == 1 and asked_titles(script)[-1] == ex.meta["title"] and len(script.requests) == 5


def test_429_retry_after_500_and_a_timeout_are_retried(server, vault_store):
    url, script = server([("status", 429, {"Retry-After": "0.3"}), ("status", 500, {}),
                          ("slow", 2.0, "How do I decide about my old car?")])  # 2 s > the 1 s timeout
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m", limit=1)
    assert (r.done, r.failed) == (1, 0) and r.requests == 4 == len(script.requests)
    assert script.requests[1]["at"] - script.requests[0]["at"] >= 0.3  # Retry-After was honoured
    assert by_title(vault_store)["Keep the old car"].messages[0]["content"] == "What did I write about keep the old car?"
    assert r.prompt_tokens == 11 and r.completion_tokens == 22  # only the answered request has usage


def test_500s_until_the_retry_cap_fail_that_note_only(server, vault_store):
    url, script = server([("status", 500, {})] * 4)  # max_retries 3: four tries, then that note fails
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m")
    assert (r.done, r.failed, r.remaining) == (3, 1, 1)
    assert r.errors == ["#1 Decisions/Keep the old car.md: InternalServerError: 500"]
    assert by_title(vault_store)["Keep the old car"].messages[0]["content"] == "Tell me about Keep the old car."
    assert len(script.requests) == 4 + 3


def test_bad_replies_are_refused_and_the_template_kept(server, vault_store):
    notes = by_title(vault_store)
    copy = notes["Ship the beta"].messages[1]["content"]
    url, script = server([("json", "  \n "), ("json", f"Question: {copy}"), ("json", "Why? " * 120),
                          ("json", "1. What did I learn?\n2. What should I bake next?"),
                          ("json", "Tell me about " + "bread " * 30, "length"),
                          ("json", '"Tell me about Ship the beta."')])
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m")
    reasons = [e.split(": ", 1)[1] for e in r.errors]
    assert reasons == ["the reply is empty", "the reply copies the note instead of asking for it",
                       "the reply is too long (599 characters; backtranslate.max_prompt_chars is 400)",
                       "the reply lists several requests, not one"]
    assert r.failed == 4 and r.done == 0 and r.remaining == 4
    assert {t: e.messages for t, e in by_title(vault_store).items()} == {t: e.messages for t, e in notes.items()}
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m", limit=2)
    assert [e.split(": ", 1)[1] for e in r.errors] == [
        "the reply is too long (193 characters, cut off at max_tokens; backtranslate.max_prompt_chars is 400)",
        "the reply repeats the template prompt"]


@pytest.mark.parametrize("reply, expected", [
    ("How do I keep a sourdough starter alive?", "How do I keep a sourdough starter alive?"),
    ("**Question:** “How do I keep a starter alive?”", "How do I keep a starter alive?"),
    ("Request: 'Summarise my notes on the car.'", "Summarise my notes on the car."),
    ("```\nWhat should I bake first?\n```", "What should I bake first?"),
    ("What should I bake first?\nAnswer: bread.", "What should I bake first?"),
    ("What should I bake\nfirst?\n\nBread, obviously.", "What should I bake first?"),
    ("Q: Which car should I keep?", "Which car should I keep?"),
    ("- Which car should I keep?", "Which car should I keep?"),
    ("What did I decide?\nNote (Tomatoes): Water them daily.", "What did I decide?"),  # the model goes on
])
def test_reply_cleaning(reply, expected):
    assert bt.clean_reply(reply, "an unrelated note about other things entirely", "Tell me about X.", 400) == \
        (expected, None)


def test_caps_bound_requests_and_tokens(server, vault_store):
    url, script = server([])
    r = bt.backtranslate(vault_store, cfg(vault_store, max_requests=2), url, "m")
    assert r.requests == 2 == len(script.requests) and r.done == 2 and r.remaining == 2
    url, script = server([])  # 33 tokens a reply: a 40-token budget allows two requests
    r = bt.backtranslate(vault_store, cfg(vault_store, max_total_tokens=40), url, "m")
    assert len(script.requests) == 2 and r.done == 2 and r.remaining == 0


def test_stopped_runs_go_on_where_they_stopped(server, vault_store):
    url, script = server([])
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m", limit=1)
    assert (r.done, r.total, r.remaining) == (1, 1, 3)

    def ctrl_c_after_two(report):
        if report.done == 2:
            raise KeyboardInterrupt

    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m", progress=ctrl_c_after_two)
    assert r.interrupted and r.done == 2 and r.remaining == 1
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m")
    assert r.done == 1 and r.remaining == 0
    assert asked_titles(script) == TEMPLATE_TITLES  # each note asked for exactly once
    assert sum(e.edited for e in vault_store.examples()) == 4


def test_what_a_person_did_is_never_touched(server, vault_store, config):
    url, script = server([])
    notes = by_title(vault_store)
    curate.edit(vault_store, notes["Keep the old car"].id,
                [{"role": "user", "content": "Should I keep my car?"}, notes["Keep the old car"].messages[1]])
    curate.approve(vault_store, notes["Ship the beta"].id, config)
    curate.reject(vault_store, notes["Sleep experiment"].id, "too personal")
    r = bt.backtranslate(vault_store, cfg(vault_store), url, "m")
    assert r.done == 1 and asked_titles(script) == ["Sourdough basics"]
    assert r.skipped == {"edited": 1, "decided": 2, "own-prompt": 1}
    after = by_title(vault_store)
    assert after["Keep the old car"].messages[0]["content"] == "Should I keep my car?"
    assert after["Ship the beta"].messages == notes["Ship the beta"].messages


def test_an_edit_made_while_the_request_runs_wins(vault_store, tmp_path):
    """Another window edits the note while its prompt is being written: the written prompt is dropped."""
    other = Store(vault_store.path)
    eid = by_title(vault_store)["Keep the old car"].id

    def edit_then_answer(n, body):
        if n == 1:
            ex = other.get(eid)
            curate.edit(other, eid, [{"role": "user", "content": "My own question?"}, ex.messages[1]])
        return question(n, body)

    with scripted_server(edit_then_answer) as start:
        url, _ = start([])
        r = bt.backtranslate(vault_store, cfg(vault_store), url, "m")
    other.close()
    assert r.done == 3 and r.skipped["changed"] == 1
    assert vault_store.get(eid).messages[0]["content"] == "My own question?"


def test_examples_stored_before_prompt_source_are_recognised(store):
    """Older extractions kept no `prompt_source`: the template is rendered again from the title and heading."""
    def item(key, user, heading, title="Sourdough basics", **meta):
        return {"extract_key": key, "source_kind": "obsidian", "source_ref": "Learning/Sourdough.md", "tags": [],
                "note_path": "Learning/Sourdough.md", "heading": heading, "meta": {"title": title, **meta},
                "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": f"text {key}"}]}

    store.ingest([item("a", "Tell me about Sourdough basics.", "Sourdough basics"),
                  item("b", "Tell me about Sourdough basics: Starter (part 2 of 3).", "Starter"),
                  item("c", "How long should the dough rest?", "Baking"),
                  item("d", "Tell me about Old template wording.", "x", prompt_source="template", heading_path=["x"])])
    todo, skipped = bt.candidates(store, Config(workspace=str(store.path.parent)).extract.obsidian)
    assert [(e.heading, w) for e, w in todo] == [
        ("Sourdough basics", bt.WHOLE), ("Starter", bt.SECTION), ("x", bt.SECTION)]
    assert skipped == {"not-template": 1}


def test_nothing_to_do_calls_nobody(store, vault_store):
    for e in store.examples():
        if not e.edited and e.status == "pending":
            curate.reject(store, e.id)
    closed = f"http://127.0.0.1:{free_port()}/v1"
    r = bt.backtranslate(store, cfg(store), closed)  # would fail if it tried to reach the closed port
    assert r.done == r.requests == r.total == 0 and r.skipped == {"decided": 5}


def _cli(ws: Path, *args, env_extra=None):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FORGE_")},
           "FORGE_GENERATE__BACKOFF_BASE_S": "0.05", "FORGE_GENERATE__TIMEOUT_S": "2", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=120)


def test_cli_lists_the_model_when_none_is_given_and_prints_one_json_document(server, vault_store, tmp_path):
    url, script = server([], models=("first-listed", "second"))
    ws = vault_store.path.parent
    p = _cli(ws, "backtranslate", "--base-url", url, "--source", "Decisions/", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["done"] == 2 and out["model"] == "first-listed" and out["skipped_by_reason"] == {"own-prompt": 1}
    assert {r["body"]["model"] for r in script.requests} == {"first-listed"}
    p = _cli(ws, "backtranslate", "--base-url", url, "--model", "second", "--limit", "1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("backtranslated 1 · failed 0 · skipped 3") and "model second" in p.stdout
    assert "1 note(s) still carry the template prompt" in p.stderr
    p = _cli(ws, "undo")
    assert p.returncode == 0 and "undid backtranslate" in p.stdout


def test_cli_names_an_endpoint_that_is_not_there_in_one_line(vault_store):
    closed = f"http://127.0.0.1:{free_port()}/v1"
    for model in ([], ["--model", "m"]):
        p = _cli(vault_store.path.parent, "backtranslate", "--base-url", closed, *model, "--json")
        assert p.returncode == 1
        assert json.loads(p.stdout)["error"].startswith(f"cannot reach {closed}")
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("forge: error: cannot reach") and "forge serve" in lines[0]
    assert not any(e.edited for e in vault_store.examples())
