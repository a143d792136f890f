"""Big inputs, each against the bare library forge wraps, measured in one run. No path may grow with the square of
its input: each line also times the same shape at a quarter of the size (`growth`: 4.0 is linear, 16 quadratic).

- note: importing one generated ~1 MB note (~300k words under headings: paragraphs, lists, long lines, a
  paragraph without breaks, code) into a workspace whose tokenizer is already prepared, split into token-bounded
  examples and stored, vs one bare `tokenizers` pass over the same note. Goal: ≤ 2× the bare pass.
- csv: a CSV with three 1 MB response cells (and 1,000 short rows), imported and stored, vs a bare `csv.reader`.
- chat: a ~7 MB ChatGPT-style conversations.json (short conversations and one long one whose answers are split
  around thousands of tool calls), imported and stored, vs a bare `json.loads` of the file.
- survey: the import dialog's survey (notes, folders, tags) of a vault holding the 1 MB note and 500 short notes,
  vs a bare python-frontmatter loop over the same files.

Usage: .venv/bin/python -m benchmarks.bench_big_input [MB]   (MB: the note's size, default 1)
"""

from __future__ import annotations

import csv
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import frontmatter

from benchmarks.common import corpus_sentences, timed
from forge.config import Config
from forge.data.extract import run_extract
from forge.data.extract.obsidian import survey_vault
from forge.data.tokens import token_counter, tokenizer_file
from forge.store import Store

SHORT = ("a an the of to in is it we go do be so up on at by or no my me he she us day log note plan walk "
         "code read idea").split()


def big_note(target_bytes: int, seed: int = 0) -> str:
    """A long note as people write them: days under headings, paragraphs of sentences, lists, lines without
    punctuation, now and then a paragraph with no break at all (a pasted transcript), code, links and tags."""
    rng = random.Random(seed)
    prose = corpus_sentences()

    def words(n: int) -> str:
        return " ".join(rng.choice(SHORT) for _ in range(n))

    out = ["---\ntags: [journal]\n---\n# Everything, one note\n"]
    size, day = 0, 0
    while size < target_bytes:
        day += 1
        block = [f"## Day {day}"]
        for j in range(rng.randint(8, 30)):
            r = rng.random()
            if r < 0.06:
                block.append(f"### Part {day}.{j}")
            elif r < 0.10:
                code = "\n".join(f"x{k} = {k}  # [[not a link]]" for k in range(rng.randint(2, 12)))
                block.append(f"```python\n{code}\n```")
            elif r < 0.30:
                block.append("\n".join(f"- {words(rng.randint(3, 10))}" for _ in range(rng.randint(2, 12))))
            elif r < 0.38:
                block.append("\n".join(words(rng.randint(4, 14)) for _ in range(rng.randint(10, 60))))
            elif r < 0.40:
                block.append(words(rng.randint(1500, 4000)))
            else:
                block.append(" ".join(rng.choice(prose) if rng.random() < 0.2 else words(rng.randint(5, 16)) + "."
                                      for _ in range(rng.randint(1, 6))) + f" See [[Day {day - 1}|yesterday]] #log")
        text = "\n\n".join(block) + "\n\n"
        out.append(text)
        size += len(text.encode("utf-8"))
    return "".join(out)


def chat_export(target_bytes: int, seed: int = 0) -> list[dict]:
    """ChatGPT's conversations.json shape: a tree of nodes per conversation, the current branch ending at
    `current_node`; one long conversation has each answer split around tool calls."""
    rng = random.Random(seed)
    prose = corpus_sentences()

    def conversation(i: int, turns: int, tool_calls: int) -> dict:
        mapping = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
        prev = "root"

        def add(role: str, text: str, recipient: str = "all") -> None:
            nonlocal prev
            nid = f"c{i}-{len(mapping)}"
            mapping[nid] = {"id": nid, "parent": prev, "children": [], "message": {
                "author": {"role": role}, "recipient": recipient, "metadata": {},
                "content": {"content_type": "text", "parts": [text]}}}
            mapping[prev]["children"].append(nid)
            prev = nid

        for t in range(turns):
            add("user", " ".join(rng.sample(prose, 2)))
            for _ in range(tool_calls):
                add("assistant", " ".join(rng.sample(prose, 3)))
                add("assistant", '{"query": "x"}', recipient="browser")
                add("tool", "search results")
            add("assistant", " ".join(rng.sample(prose, 4)))
        return {"title": f"Conversation {i}", "create_time": 1.7e9 + i, "mapping": mapping, "current_node": prev}

    convs = [conversation(0, 4, max(1, target_bytes // 12_000))]  # a third of the bytes: answers around tool calls
    size = len(json.dumps(convs[0]))
    while size < target_bytes:
        convs.append(conversation(len(convs), rng.randint(1, 12), rng.choice([0, 0, 0, 1, 3])))
        size += len(json.dumps(convs[-1]))
    return convs


def _import(tmp: Path, kind: str, path: Path, config: Config, tag: str) -> dict:
    store = Store.for_workspace(tmp / f"store-{tag}")
    try:
        return run_extract(store, kind, path, config, all_notes=True) if kind == "obsidian" else \
            run_extract(store, kind, path, config)
    finally:
        store.close()


def _line(forge_s: float, bare_s: float, small_forge_s: float, **extra) -> dict:
    return {**extra, "forge_s": round(forge_s, 3), "bare_s": round(bare_s, 3),
            "times_bare": round(forge_s / bare_s, 2), "growth_4x": round(forge_s / small_forge_s, 1)}


def main(mb: float = 1.0) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="forge-bench-big-"))
    runs = iter(range(1000))
    try:
        config = Config(workspace=str(tmp / "ws"))
        count = token_counter(config.workspace_path())  # a workspace whose tokenizer is prepared (and loaded)
        from tokenizers import Tokenizer

        bare_tok = Tokenizer.from_file(str(tokenizer_file(config.workspace_path())))
        result: dict = {}

        # note
        def note_case(size: int) -> tuple[float, float, dict]:
            vault = tmp / f"vault-{size}"
            vault.mkdir()
            text = big_note(size)
            (vault / "Everything.md").write_text(text, encoding="utf-8")
            count(text[:1000]), bare_tok.encode(text[:1000])  # both warm
            report: dict = {}

            def forge_run():
                report.update(_import(tmp, "obsidian", vault, config, f"note{next(runs)}"))

            t_forge = timed(forge_run)
            t_bare = timed(lambda: bare_tok.encode(text, add_special_tokens=False))
            return t_forge, t_bare, {"bytes": len(text.encode("utf-8")), "words": len(text.split()),
                                     "tokens": count(text), "examples": report["added"]}

        size = int(mb * 1_000_000)
        small, _, _ = note_case(size // 4)
        t_forge, t_bare, facts = note_case(size)
        result["note"] = _line(t_forge, t_bare, small, **facts, goal="times_bare <= 2")

        # csv
        def csv_case(cell_bytes: int) -> tuple[float, float, dict]:
            path = tmp / f"rows-{cell_bytes}.csv"
            cell = big_note(cell_bytes, seed=1).replace("---", "")
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["prompt", "response"])
                for i in range(3):
                    w.writerow([f"Tell me everything, part {i}.", f"{cell} ({i})"])
                for i in range(1000):
                    w.writerow([f"question {i}", f"answer {i}"])
            report: dict = {}

            def bare():
                csv.field_size_limit(10 ** 9)
                with open(path, newline="", encoding="utf-8") as f:
                    return list(csv.reader(f))

            t_forge = timed(lambda: report.update(_import(tmp, "csv", path, config, f"csv{next(runs)}")))
            return t_forge, timed(bare), {"bytes": path.stat().st_size, "examples": report["added"]}

        small, _, _ = csv_case(size // 4)
        t_forge, t_bare, facts = csv_case(size)
        result["csv"] = _line(t_forge, t_bare, small, **facts)

        # chat export
        def chat_case(nbytes: int) -> tuple[float, float, dict]:
            path = tmp / f"conversations-{nbytes}.json"
            path.write_text(json.dumps(chat_export(nbytes)), encoding="utf-8")
            report: dict = {}
            t_forge = timed(lambda: report.update(_import(tmp, "jsonl", path, config, f"chat{next(runs)}")))
            return t_forge, timed(lambda: json.loads(path.read_text(encoding="utf-8"))), \
                {"bytes": path.stat().st_size, "examples": report["added"]}

        small, _, _ = chat_case(7 * size // 4)
        t_forge, t_bare, facts = chat_case(7 * size)
        result["chat"] = _line(t_forge, t_bare, small, **facts)

        # survey
        def survey_case(size: int) -> tuple[float, float, dict]:
            vault = tmp / f"survey-{size}"
            (vault / "journal").mkdir(parents=True)
            (vault / "journal" / "Everything.md").write_text(big_note(size), encoding="utf-8")
            for i in range(500):
                (vault / f"area{i % 10}").mkdir(exist_ok=True)
                (vault / f"area{i % 10}" / f"n{i}.md").write_text(
                    f"---\ntags: [t{i % 7}]\n---\n# Note {i}\n\nA short note #idea/{i % 5}\n", encoding="utf-8")
            files = sorted(vault.rglob("*.md"))
            survey: dict = {}
            t_forge = timed(lambda: survey.update(survey_vault(vault, config.extract.obsidian,
                                                               config.extract.max_file_bytes)))
            t_bare = timed(lambda: [frontmatter.load(f) for f in files])
            return t_forge, t_bare, {"notes": survey["notes"], "tags": len(survey["tags"])}

        small, _, _ = survey_case(size // 4)
        t_forge, t_bare, facts = survey_case(size)
        result["survey"] = _line(t_forge, t_bare, small, **facts)
        for name, line in result.items():
            print(name, line)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
