"""Your own vault, first try: every file accounted for, a one-line hint when a filter left nothing, filters given
on the command line and remembered per vault, long notes split into examples that fit, and no note able to stop an
import. Runs on tests/data/vaults/messy (bad YAML, a `content:` key, cp1252, UTF-16, CRLF, NUL bytes, empty notes,
templates, attachments, a 16 KB handbook with headings at three levels)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from forge.config import Config, ObsidianConfig
from forge.data.extract import run_extract
from forge.data.extract.obsidian import extract_vault
from forge.data.tokens import token_counter
from forge.store import Store

MESSY = Path(__file__).resolve().parents[3] / "data" / "vaults" / "messy"
REPO = Path(__file__).resolve().parents[4]


def forge(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui.launch", "-w", str(ws), *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def accounted(report: dict, items_paths: set[str]) -> set[str]:
    """Files an import reported: examples, per-file skips, and every file inside a folder skipped as a whole."""
    out = set(items_paths)
    for s in report["skipped"]:
        src = s["source"]
        if src.endswith("/"):
            out |= {f for f in all_files(MESSY) if f.startswith(src)}
        else:
            out.add(src)
    return out


@pytest.fixture
def ws(tmp_path):
    return tmp_path / "ws"


def test_every_file_of_a_messy_vault_is_an_example_or_skipped_with_a_reason(tmp_path):
    config = Config(workspace=str(tmp_path / "ws"))
    store = Store.for_workspace(config.workspace_path())
    report = run_extract(store, "obsidian", MESSY, config, all_notes=True)
    paths = {e.note_path for e in store.examples()}
    # the dotfile app.json is settings; everything else must be accounted for
    assert accounted(report, paths) >= all_files(MESSY) - {".obsidian/app.json"}
    reasons = {s["source"]: s for s in report["skipped"]}
    # Frontmatter YAML refuses (a date of month 13, a tab) costs only the bad key: the notes are in, and the report
    # names the line of each repair.
    repaired = {r["source"]: r["reason"] for r in report["repaired"]}
    assert "line 2: `date` read as plain text" in repaired["Journal/2026-03-03.md"]
    assert "line 3 under `tags` left out" in repaired["Journal/2026-03-05.md"]
    assert not any(s["code"] == "bad-frontmatter" for s in report["skipped"])
    assert reasons["Journal/empty.md"]["code"] == reasons["Journal/only frontmatter.md"]["code"] == "empty"
    assert reasons["templates/Daily template.md"]["code"] == "template"
    assert reasons["attachments/diagram.png"]["code"] == "skipped-folder" if "attachments/diagram.png" in reasons \
        else reasons["attachments/"]["code"] == "skipped-folder"
    assert reasons["No extension"]["code"] == "not-a-note"
    # The notes that broke or puzzled parsers are in, with their text.
    texts = {e.note_path: e.messages[-1]["content"] for e in store.examples()}
    assert "must not stop the import" in texts["Journal/2026-03-03.md"]
    assert "Tabs are not YAML" in texts["Journal/2026-03-05.md"]
    assert "light on the water" in texts["Journal/2026-03-01.md"]  # frontmatter with a `content:` key
    assert "stop checking email" in texts["Journal/2026-03-02.md"]  # `handler:` key
    assert "Café crème, naïve résumé — “quoted”" in texts["Journal/cp1252 note.md"]
    assert "old Windows editor" in texts["Journal/utf16 note.md"]
    assert "Line one.\nLine two" in texts["Journal/crlf note.md"]
    assert "\x00" not in texts["Journal/nul bytes.md"] and "middle of a note" in texts["Journal/nul bytes.md"]
    assert sum(report["reasons"].values()) == len(report["skipped"])


def test_a_filter_that_matches_nothing_says_which_tags_the_vault_has(ws):
    r = forge(ws, "extract", "obsidian", str(MESSY), "--tag", "reflectionz", "--json")
    report = json.loads(r.stdout)
    assert report["added"] == 0 and report["reasons"]["tag-filter"] >= 10
    hint = report["hint"]
    assert "#reflectionz" in hint and "#journal" in hint and "--tag journal" in hint and "--all-notes" in hint
    survey = dict(map(tuple, report["survey"]["tags"]))
    assert survey["journal"] >= 8 and "2026" not in survey  # numeric tags are not tags
    human = forge(ws, "extract", "obsidian", str(MESSY), "--tag", "reflectionz")
    assert human.returncode == 0 and "forge: no note carries the tags #reflectionz" in human.stderr
    assert "left out by the tag filter" in human.stderr


def test_tag_and_folder_flags_are_remembered_per_vault_and_can_be_forgotten(ws, tmp_path):
    first = json.loads(forge(ws, "extract", "obsidian", str(MESSY), "--tag", "journal", "--exclude-folder", "Private",
                             "--json").stdout)
    assert first["filter"]["origin"] == "given" and first["added"] >= 6
    store = Store.for_workspace(ws)
    assert not any(e.note_path.startswith("Private/") for e in store.examples())
    assert all("journal" in e.tags for e in store.examples())
    again = json.loads(forge(ws, "extract", "obsidian", str(MESSY), "--json").stdout)
    assert again["filter"] == {**first["filter"], "origin": "remembered"}
    assert again["added"] == 0 and again["unchanged"] == first["added"]
    only = json.loads(forge(ws, "extract", "obsidian", str(MESSY), "--all-notes", "--folder", "Work", "--json").stdout)
    assert only["added"] == 3 and only["reasons"]["folder-filter"] >= 10
    # Another vault has its own (no) remembered filter.
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    (other / "x" / "n.md").write_text("#reflection\nhello")
    assert json.loads(forge(ws, "extract", "obsidian", str(other), "--json").stdout)["filter"]["origin"] == "config"
    forgot = json.loads(forge(ws, "extract", "obsidian", str(MESSY), "--forget-filter", "--json").stdout)
    assert forgot["filter"]["origin"] == "config" and forgot["filter"]["include_tags"] == ["reflection", "decision", "learning"]


def test_an_empty_folder_is_not_a_vault_hint(ws, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    report = json.loads(forge(ws, "extract", "obsidian", str(empty), "--json").stdout)
    assert report["read"] == 0 and "no Markdown notes" in report["hint"]


def words(text: str) -> Counter:
    return Counter(re.findall(r"[\w’']+", text.replace("#", " ")))


def test_long_notes_split_at_headings_into_examples_that_fit_and_lose_no_text(tmp_path):
    config = Config(workspace=str(tmp_path / "ws"))
    count = token_counter(config.workspace_path())
    cfg = ObsidianConfig(include_tags=["handbook"], max_tokens=512)
    whole = extract_vault(MESSY, cfg.model_copy(update={"max_tokens": None}), 10**6).items
    split = extract_vault(MESSY, cfg, 10**6, count=count)
    assert len(whole) == 1 and len(split.items) >= 5
    assert split.chunked["notes"] == 1 and split.chunked["examples"] == len(split.items)
    for it in split.items:
        user, answer = it["messages"][0]["content"], it["messages"][1]["content"]
        assert count(user) + count(answer) + 40 <= 512, it["heading"]
        assert it["note_path"] == "Garden/Handbook.md" and it["line"] >= 1
    headings = [it["heading"] for it in split.items]
    assert "Soil" in " ".join(headings) or "Garden handbook" in headings
    assert any(it["meta"]["parts"] > 1 and "(part 1 of" in it["messages"][0]["content"] for it in split.items)
    assert any("Watering" in it["messages"][0]["content"] for it in split.items)
    # Short sections (### Tips, ## Tiny) merged into a neighbour, with their heading kept as a Markdown line.
    assert not any(it["heading"].endswith("Tiny") for it in split.items)
    assert any("## Tiny" in it["messages"][1]["content"] for it in split.items)
    # Nothing dropped: every word of the note is in some example (a chunk's own heading path is in its prompt), as
    # often as in the note.
    got = sum((words(it["messages"][1]["content"]) + words(" ".join(it["meta"]["heading_path"][-1:]))
               for it in split.items), Counter())
    want = words(whole[0]["messages"][1]["content"])
    assert not (want - got), want - got
    # Idempotent: the same split twice.
    assert extract_vault(MESSY, cfg, 10**6, count=count).items == split.items


def test_csv_and_jsonl_reports_count_every_row_read(tmp_path):
    """`read` counts rows and records, so added + unchanged + duplicates + skipped always adds up to it."""
    store = Store.for_workspace(tmp_path / "ws")
    config = Config(workspace=str(tmp_path / "ws"))
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text('prompt,response\n"a, quoted",one\n\n,no prompt\nsame,two\nsame,two\n', encoding="utf-8")
    r = run_extract(store, "csv", csv_file, config)
    assert r["read"] == 4 and r["added"] + r["duplicates"] + len(r["skipped"]) == 4, r
    jl = tmp_path / "rows.jsonl"
    jl.write_text('{"prompt": "p1", "response": "r1"}\nnot json\n\n[{"prompt": "p2", "response": "r2"}]\n',
                  encoding="utf-8")
    r = run_extract(store, "jsonl", jl, config)
    assert r["read"] == 3 and r["added"] + len(r["skipped"]) == 3, r


def test_a_note_whose_frontmatter_is_not_valid_yaml_is_imported_with_the_keys_that_read(ws):
    """Real vaults are full of `title: Part 2: the plan` and `related: [[a]] [[b]]`, which YAML refuses and Obsidian
    users write anyway. Such a note is imported: each top-level key is read alone, a one-line value YAML refuses is
    kept as its text, a bad multi-line one is left out, and the report names the note, the line and the key."""
    r = forge(ws, "extract", "obsidian", str(MESSY), "--tag", "adr")
    assert r.returncode == 0, r.stderr
    assert "added 1," in r.stdout and "1 note(s) imported although their frontmatter is not valid YAML" in r.stderr
    assert ("Work/Decisions/ADR-7 prices.md: line 2: `title` read as plain text; line 6: `related` read as plain "
            "text; lines 7-9: `aliases` left out") in r.stderr
    (ex,) = Store.for_workspace(ws).examples()
    assert ex.tags == ["adr", "work/decision", "pricing"]  # the keys that read are used: the tag filter saw them
    assert ex.meta["title"] == 'ADR-7 — price "with VAT included" in the form: stored net vs a price_mode column'
    assert 'ADR-7 — price "with VAT included" in the form' in ex.messages[0]["content"]  # the prompt names it
    assert "Store the net price" in ex.messages[-1]["content"] and "aliases" not in ex.messages[-1]["content"]


def test_drawings_comments_and_block_ids_stay_out_of_the_examples(tmp_path):
    """What Obsidian's reading view hides stays out of training text: an Excalidraw drawing (its markdown is labels
    and a JSON scene; in a public vault 1,041 of 2,644 examples came from 52 drawings) is skipped with its reason,
    `%%comments%%` and `^block-ids` are dropped from the text and comments' tags and headings do not count."""
    config = Config(workspace=str(tmp_path / "ws"))
    store = Store.for_workspace(config.workspace_path())
    report = run_extract(store, "obsidian", MESSY, config, all_notes=True)
    skipped = {s["source"]: s for s in report["skipped"]}
    assert skipped["Garden/Pond sketch.excalidraw.md"]["code"] == "drawing"
    assert not any("Pond" in e.messages[-1]["content"] for e in store.examples())
    (compost,) = [e for e in store.examples() if e.note_path == "Garden/Compost.md"]
    text = compost.messages[-1]["content"]
    assert text.startswith("Turn the heap every two weeks. Keep it as damp as a wrung-out sponge.\n")
    assert "Sam" not in text and "neighbour" not in text and "Not a heading" not in text
    assert "^turn-rule" not in text and "^compost-list" not in text and "- Browns: cardboard, dry leaves" in text
    assert "A `%%` in code stays, and so does 2 ^ 3 in the middle of a line." in text
    assert "A caret before code is text: x ^y `z`." in text  # not a block id: the line goes on
    assert "Rating:: 4 of 5" in text  # a Dataview field is text in an Obsidian vault
    # a markdown link to a note reads as its text, a local image goes, a link to the web stays
    assert "See the bin guide and , or [a site](https://example.org/x.md)." in text
    assert compost.tags == ["garden"]  # the #garden/complaint inside the comment is not a tag
    # The survey (of notes a folder filter leaves out too) counts tags as the import does: none from the comment or
    # from the drawing.
    survey = extract_vault(MESSY, ObsidianConfig(include_tags=[], exclude_folders=["Garden"]), 10**6).survey
    counted = {t for t, _ in survey["tags"]}
    assert "garden" in counted and not {"garden/complaint", "excalidraw"} & counted


LOGSEQ = Path(__file__).resolve().parents[3] / "data" / "vaults" / "logseq"


def test_a_logseq_graph_reads_page_properties_and_leaves_its_backups_out(tmp_path):
    """A Logseq graph (logseq/config.edn): logseq/bak/ holds old copies of every page and is left out, named; a
    page's `tags::` are its tags and `title::` its title; property lines and empty blocks are not text; code keeps
    what looks like a property."""
    config = Config(workspace=str(tmp_path / "ws"))
    store = Store.for_workspace(config.workspace_path())
    report = run_extract(store, "obsidian", LOGSEQ, config, all_notes=True)
    skipped = {s["source"]: s["reason"] for s in report["skipped"]}
    assert skipped["logseq/"] == ("1 note(s) in a folder forge never reads (Logseq's own folder: settings, bak/ "
                                  "copies of old pages, .recycle/)")
    by_path = {e.note_path: e for e in store.examples()}
    assert set(by_path) == {"pages/Selection Sort.md", "journals/2025_03_04.md"}
    page = by_path["pages/Selection Sort.md"]
    assert page.tags == ["algorithms", "sorting", "card-deck"]
    assert page.messages[0]["content"] == "Tell me about Selection Sort."
    text = page.messages[-1]["content"]
    assert "::" not in text.replace('{"a":: 1}', "") and '{"a":: 1}' in text
    assert text.startswith("- Selection sort picks the smallest item") and "\n-\n" not in text
    assert by_path["journals/2025_03_04.md"].tags == ["journal"]
