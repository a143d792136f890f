"""Backtranslation for real: the companion serves the bundled SmolLM2 (`base`) on loopback and writes the request
each templated note answers. (Failure modes against a scripted server: tests/forge/llm/test_backtranslate.py.)"""

import json

import pytest

from forge.config import Config
from forge.data.extract import run_extract
from forge.llm import backtranslate as bt
from forge.store import Store
from tests.forge.llm.test_backtranslate import VAULT

pytestmark = pytest.mark.slow


def test_the_bundled_model_writes_prompts_for_notes(on_base, tmp_path):
    # Greedy, so the same notes give the same prompts; a long timeout, as a busy CPU can make a request slow.
    config = Config(workspace=str(tmp_path / "ws"), backtranslate={"temperature": 0}, generate={"timeout_s": 300})
    store = Store.for_workspace(config.workspace_path())
    run_extract(store, "obsidian", VAULT, config)
    before = {e.id: e for e in store.examples()}
    r = bt.backtranslate(store, config, f"{on_base.url}/v1", source="Decisions/")  # no model: the one it lists
    assert r.model == "base" and r.requests >= 2 and r.prompt_tokens > 0 and r.completion_tokens > 0
    assert (r.done, r.failed, r.skipped) == (2, 0, {"own-prompt": 1}), r.errors
    for e in store.examples():
        old = before[e.id]
        assert e.messages[1]["content"] == old.messages[1]["content"]  # the note, byte for byte
        if e.meta["prompt_source"] == "frontmatter" or not e.note_path.startswith("Decisions/"):
            assert e.messages == old.messages and not e.edited
            continue
        prompt = e.messages[0]["content"]
        assert prompt != old.messages[0]["content"] and not prompt.startswith("Tell me about")
        assert 0 < len(prompt) <= config.backtranslate.max_prompt_chars and e.status == "pending"
        p = bt.provenance(store, e)
        assert p["model"] == "base" and p["host"] == on_base.url.split("//")[1] and p["template"] == "default"
    log = [d for d in store.decisions() if d["action"] == "backtranslate"]
    assert len(log) == 2 and json.loads(log[0]["reason"])["replaced"] == bt.WHOLE
    for _ in log:
        eid = store.undo()["example_ids"][0]
        assert store.get(eid).messages == before[eid].messages and store.get(eid).status == "pending"
    store.close()
