import os

import pytest

from forge.config import Config, ObsidianConfig
from forge.data.extract import run_extract
from forge.data.extract.obsidian import extract_vault, inline_tags, render_body
from tests.conftest import SAMPLE_VAULT


def vault(tmp_path, notes: dict[str, str | bytes]):
    root = tmp_path / "vault"
    for rel, text in notes.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return root


def extract(root, **cfg):
    return extract_vault(root, ObsidianConfig(**cfg), 1_000_000)


def by_path(result):
    return {it["note_path"]: it for it in result.items}


def test_sample_vault_has_thirty_plus_examples_and_reports_bad_notes(sample_store):
    assert sample_store.counts()["total"] >= 30


def test_sample_vault_report_names_each_skipped_note():
    r = extract(SAMPLE_VAULT)
    reasons = {s.source: s.reason for s in r.skipped}
    # `tags: [reflection` never closes: the tags are left out, so the note is filtered out, and the reason says why
    assert reasons["Inbox/Broken frontmatter.md"].endswith(
        "its frontmatter is not valid YAML: line 2: `tags` left out (a list that does not close)")
    assert "no text" in reasons["Inbox/Empty reflection.md"]
    paths = {it["note_path"] for it in r.items}
    assert not any(p.startswith(("templates/", ".obsidian/", "attachments/")) for p in paths)
    assert "Reading/Atomic habits.md" not in paths  # no include tag


def test_tags_from_frontmatter_list_string_inline_and_nested(tmp_path):
    root = vault(tmp_path, {
        "a.md": "---\ntags: [reflection, Work]\n---\nbody a",
        "b.md": "---\ntags: decision, home\n---\nbody b",
        "c.md": "Some text #learning/ml and #idea.\n",
        "d.md": "```\n#reflection in code\n```\nand `#decision` inline code\n",
        "e.md": "---\ntags: [journal]\n---\n# Heading is not a tag\n#reflection/daily\ntext",
    })
    items = by_path(extract(root))
    assert items["a.md"]["tags"] == ["reflection", "work"]
    assert items["b.md"]["tags"] == ["decision", "home"]
    assert items["c.md"]["tags"] == ["learning/ml", "idea"]
    assert "d.md" not in items  # tags only inside code do not count
    assert items["e.md"]["tags"] == ["journal", "reflection/daily"]


def test_include_tags_are_configurable(tmp_path):
    root = vault(tmp_path, {"a.md": "#journal\nx", "b.md": "#reflection\ny"})
    assert set(by_path(extract(root, include_tags=["journal"]))) == {"a.md"}
    assert set(by_path(extract(root, include_tags=[]))) == {"a.md", "b.md"}


def test_note_becomes_a_conversation(tmp_path):
    root = vault(tmp_path, {
        "Notes/Walk.md": "---\ntags: [reflection]\n---\n# Evening walk\n\nMet [[People/Ann|my sister]] near "
                         "[[Park]] and [[Places/Cafe#Menu]].\n![[photo.png]]\n\n```py\nx = '[[not a link]]'\n```\n",
        "Notes/Asked.md": "---\ntags: [reflection]\nprompt: What did you learn today?\n---\nPatience.",
    })
    items = by_path(extract(root))
    walk = items["Notes/Walk.md"]
    assert walk["messages"][0] == {"role": "user", "content": "Tell me about Evening walk."}
    answer = walk["messages"][1]["content"]
    assert answer.startswith("Met my sister near Park and Cafe.")
    assert "photo.png" not in answer and "tags:" not in answer and "# Evening walk" not in answer
    assert "x = '[[not a link]]'" in answer  # code kept verbatim
    assert walk["heading"] == "Evening walk" and walk["line"] == 4
    assert items["Notes/Asked.md"]["messages"][0]["content"] == "What did you learn today?"


def test_prompt_template_is_configurable(tmp_path):
    root = vault(tmp_path, {"My day.md": "#reflection\ntext"})
    item = extract(root, prompt_template="Write about {title} ({tags})").items[0]
    assert item["messages"][0]["content"] == "Write about My day (reflection)"


def test_split_long_notes_by_h2(tmp_path):
    body = "#decision\n# Big choice\nintro words here\n## Why\n" + "reason " * 30 + "\n## Cost\n" + "money " * 30
    root = vault(tmp_path, {"big.md": body})
    whole = extract(root).items
    assert len(whole) == 1
    parts = extract(root, split_h2_over_words=20).items
    assert [p["heading"] for p in parts] == ["Big choice", "Why", "Cost"]
    assert parts[1]["messages"][0]["content"] == "Tell me about Big choice: Why."
    assert parts[1]["line"] == 4 and parts[2]["line"] == 6
    assert len({p["extract_key"] for p in parts}) == 3


def test_skips_settings_templates_attachments_and_escaping_symlinks(tmp_path):
    outside = tmp_path / "secret.md"
    outside.write_text("#reflection\nprivate diary outside the vault")
    root = vault(tmp_path, {".obsidian/x.md": "#reflection\na", "templates/t.md": "#reflection\nb",
                            "attachments/n.md": "#reflection\nc", "ok.md": "#reflection\nd",
                            "inner.md": "#reflection\ninner text"})
    os.symlink(outside, root / "link.md")
    os.symlink(root / "inner.md", root / "alias.md")
    r = extract(root)
    texts = " ".join(it["messages"][1]["content"] for it in r.items)
    assert "private diary" not in texts
    assert {it["note_path"] for it in r.items} == {"ok.md", "inner.md", "alias.md"}
    assert any(s.source == "link.md" and "outside the vault" in s.reason for s in r.skipped)


def test_bom_crlf_and_cp1252_notes(tmp_path):
    root = vault(tmp_path, {
        "bom.md": b"\xef\xbb\xbf---\ntags: [reflection]\n---\nBOM body",
        "crlf.md": b"---\r\ntags: [reflection]\r\n---\r\nline one\r\nline two\r\n",
        "cp.md": "---\ntags: [reflection]\n---\ncaf\u00e9 costs 3 \u20ac".encode("cp1252"),
    })
    items = by_path(extract(root))
    assert items["bom.md"]["messages"][1]["content"] == "BOM body"
    assert items["crlf.md"]["messages"][1]["content"] == "line one\nline two"
    assert items["cp.md"]["messages"][1]["content"] == "caf\u00e9 costs 3 \u20ac"


def test_oversized_note_is_skipped_with_reason(tmp_path):
    root = vault(tmp_path, {"big.md": "#reflection\n" + "x" * 5000, "small.md": "#reflection\nfine"})
    r = extract_vault(root, ObsidianConfig(), 1000)
    assert [it["note_path"] for it in r.items] == ["small.md"]
    assert "limit" in r.skipped[0].reason and r.skipped[0].source == "big.md"


def test_reextraction_is_idempotent_updates_pending_and_keeps_human_edits(tmp_path, store):
    cfg = Config(workspace=str(tmp_path / "ws"))
    root = vault(tmp_path, {"a.md": "#reflection\nfirst version", "b.md": "#reflection\nbee"})
    assert run_extract(store, "obsidian", root, cfg)["added"] == 2
    assert run_extract(store, "obsidian", root, cfg)["unchanged"] == 2
    a, b = store.ids()
    store.edit(b, [{"role": "user", "content": "Tell me about b."}, {"role": "assistant", "content": "mine"}])
    (root / "a.md").write_text("#reflection\nsecond version")
    (root / "b.md").write_text("#reflection\nbee changed")
    r = run_extract(store, "obsidian", root, cfg)
    assert (r["updated"], r["kept"], r["added"]) == (1, 1, 0)
    assert store.get(a).messages[1]["content"] == "second version"
    assert store.get(b).messages[1]["content"] == "mine"


def test_render_body_and_inline_tags_helpers():
    assert render_body("see [[a/b/Note.md]] and [[#Heading]]") == "see Note and Heading"
    assert inline_tags("x #a1 #123 y#no #ok/deep") == ["a1", "ok/deep"]


@pytest.mark.parametrize("folder", ["missing-folder"])
def test_missing_vault_is_reported(tmp_path, folder):
    r = extract(tmp_path / folder)
    assert r.items == [] and "not a folder" in r.skipped[0].reason
