"""Notes are held out, not chunks (issue 25): every example of one vault note lands in one split, in `forge dataset
export` and in every run; leakage moves take the whole note; a dataset with no note of several examples splits
exactly as before; `forge eval --run RUN` takes the run's own held-out split without a file."""

import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forge import eval as ev
from forge.config import Config
from forge.data.dataset import export_dataset, move_leaks, note_of, split, split_sizes
from forge.data.leakage import Leak
from forge.store import Store, StoreError
from tests.conftest import REPO
from tests.forge.test_cli import forge

MESSY = REPO / "tests" / "data" / "vaults" / "messy"
HANDBOOK = "Garden/Handbook.md"  # a long note with many headings: several examples


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    """The messy vault, every note imported and approved."""
    from forge.data.extract import run_extract

    config = Config(workspace=str(tmp_path_factory.mktemp("notes") / "ws"))
    store = Store.for_workspace(config.workspace_path())
    run_extract(store, "obsidian", str(MESSY), config, all_notes=True)
    store.decide("approve-all", {i: {"status": "approved"} for i in store.ids()})
    yield store, config
    store.close()


def old_split(keys, val, test, seed):
    """The per-example split forge made before notes were held out whole."""
    order = sorted(set(keys))
    random.Random(seed).shuffle(order)
    _, n_val, n_test = split_sizes(len(order), val, test)
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def where(parts: dict) -> dict:
    return {k: name for name, ks in parts.items() for k in ks}


def hashes_and_groups(store):
    by_hash = {ex.content_hash: ex for ex in store.examples(status="approved")}
    return by_hash, {h: g for h, ex in by_hash.items() if (g := note_of(ex))}


def handbook_held_seed(by_hash, groups) -> int:
    chunks = [h for h, ex in by_hash.items() if ex.note_path == HANDBOOK]
    return next(s for s in range(100) if where(split(list(by_hash), 0.2, 0.3, s, groups))[chunks[0]] == "test")


def conv(q, a):
    return [{"role": "user", "content": q}, {"role": "assistant", "content": a}]


def test_every_chunk_of_a_note_lands_in_one_split(vault):
    store, _ = vault
    by_hash, groups = hashes_and_groups(store)
    chunks = [h for h, ex in by_hash.items() if ex.note_path == HANDBOOK]
    assert len(chunks) >= 5 and len(set(groups.values())) == len(by_hash) - len(chunks) + 1
    n = len(by_hash)
    _, n_val, n_test = split_sizes(n, 0.2, 0.3)
    torn = held = 0
    for seed in range(40):
        parts = split(list(by_hash), 0.2, 0.3, seed, groups)
        at = where(parts)
        assert sorted(at) == sorted(by_hash) and sum(map(len, parts.values())) == n  # each example once
        assert len({at[h] for h in chunks}) == 1, seed
        held += at[chunks[0]] != "train"
        # as near the fractions as whole notes allow: within one note of the target
        assert abs(len(parts["test"]) - n_test) < len(chunks) and abs(len(parts["val"]) - n_val) < len(chunks)
        old = where(old_split(list(by_hash), 0.2, 0.3, seed))
        torn += len({old[h] for h in chunks}) > 1
    assert torn >= 30  # the per-example split put the note's chunks in different splits nearly always
    assert held  # and the whole note is held out for some seeds

    # Notes of one example each (and any other example) split exactly as the per-example split did.
    rest = [h for h in by_hash if h not in chunks]
    for seed in (0, 7, 42):
        assert split(rest, 0.2, 0.3, seed, groups) == old_split(rest, 0.2, 0.3, seed)


@given(st.lists(st.tuples(st.text(alphabet="0123456789abcdef", min_size=8, max_size=8), st.integers(0, 12)),
                unique_by=lambda t: t[0], max_size=120),
       st.floats(0, 0.45), st.floats(0, 0.45), st.integers(0, 2**31))
def test_split_by_group_is_complete_keeps_groups_whole_and_leaves_train_something(rows, val, test, seed):
    keys = [k for k, _ in rows]
    groups = {k: f"note:{g}" for k, g in rows if g}  # group 0: a key of its own
    parts = split(keys, val, test, seed, groups)
    at = where(parts)
    assert sorted(at) == sorted(keys) and sum(map(len, parts.values())) == len(keys)
    assert all(len({at[k] for k in keys if groups.get(k) == g}) == 1 for g in set(groups.values()))
    assert parts["train"] or not keys
    assert split(list(reversed(keys)), val, test, seed, groups) == parts  # order of input never matters
    if all(list(groups.values()).count(g) == 1 for g in groups.values()):
        assert parts == old_split(keys, val, test, seed)  # no group of two: the per-example split


def test_export_holds_out_whole_notes_and_the_manifest_says_so(vault, tmp_path):
    store, config = vault
    by_hash, groups = hashes_and_groups(store)
    seed = handbook_held_seed(by_hash, groups)
    chunk_ids = {ex.id for ex in by_hash.values() if ex.note_path == HANDBOOK}
    r = export_dataset(store, tmp_path / "kept", config, val=0.2, test=0.3, seed=seed, keep_leaks=True)
    manifest = json.loads((tmp_path / "kept" / "manifest.json").read_text())
    assert manifest["group_by"] == "note"
    assert chunk_ids <= set(manifest["ids"]["test"])  # the whole long note is a test note
    test_rows = (tmp_path / "kept" / "test.jsonl").read_text().splitlines()
    assert len(test_rows) == r["test"] == len(manifest["ids"]["test"])
    note_of_id = {ex.id: ex.note_path for ex in by_hash.values()}
    for name in ("train", "val", "test"):
        assert manifest["notes"][name] == len({note_of_id[i] for i in manifest["ids"][name]}) == r["notes"][name]
    assert manifest["notes"]["test"] < r["test"]  # fewer notes than examples: the handbook counts once

    moved = export_dataset(store, tmp_path / "ds", config, val=0.2, test=0.3, seed=seed)  # leak moves on
    ids = json.loads((tmp_path / "ds" / "manifest.json").read_text())["ids"]
    assert sum(chunk_ids <= set(ids[name]) for name in ("train", "val", "test")) == 1
    assert moved["train"] + moved["val"] + moved["test"] == len(by_hash)


def test_a_leak_moves_its_whole_note_into_train(vault, monkeypatch):
    store, config = vault
    by_hash, groups = hashes_and_groups(store)
    parts = split(list(by_hash), 0.2, 0.3, handbook_held_seed(by_hash, groups), groups)
    chunks = [h for h in parts["test"] if by_hash[h].note_path == HANDBOOK]
    leaking = chunks[1]
    seen = {}

    def one_leak(store, held, pool, cfg, transitive=False, ignore=None, groups=None, **kw):
        seen["groups"] = groups
        i = next(k for k, m in enumerate(held) if m == by_hash[leaking].messages)
        return [Leak(i, 0, 0.93)]

    monkeypatch.setattr("forge.data.leakage.find_leaks", one_leak)
    kept = {k: list(v) for k, v in parts.items()}
    report = move_leaks(store, by_hash, kept, config, keep=True, groups=groups)
    assert kept == parts and report["test"] == [by_hash[leaking].id] and report["with_note"] == []

    report = move_leaks(store, by_hash, parts, config, keep=False, groups=groups)
    assert report["test"] == [by_hash[leaking].id] and report["moved"]
    assert report["with_note"] == sorted(by_hash[h].id for h in chunks if h != leaking)
    assert set(chunks) <= set(parts["train"]) and not set(chunks) & set(parts["test"] + parts["val"])
    assert seen["groups"].count(groups[leaking]) == len(chunks)  # the check knows which held items go together


def test_the_transitive_leak_check_counts_the_rest_of_a_moved_note_as_training_data(store, config):
    from forge.data.leakage import find_leaks

    trained = conv("How deep should a garden pond be?", "About a metre at its deepest point, for the frogs.")
    chunk = conv("Which bus goes to the airport on Sundays?", "The 42, every half hour from the station.")
    held = [trained, chunk, list(chunk)]  # note A: a copy of a training example, and a chunk; note B: its twin
    plain = find_leaks(store, held, [trained], config.dedup, transitive=True)
    assert [lk.held for lk in plain] == [0]  # held items are not compared with each other
    grouped = find_leaks(store, held, [trained], config.dedup, transitive=True, groups=["A", "A", "B"])
    # note A moves into train whole, so B, a twin of A's other chunk, would leak: it moves too
    assert [(lk.held, lk.pool) for lk in grouped] == [(0, 0), (2, 1 + 1)]
    assert find_leaks(store, held, [trained], config.dedup, groups=["A", "A", "B"]) == plain  # not transitive


def make_run(store, config, run_id, test_rows, val_rows):
    data = config.workspace_path() / "runs" / run_id / "data"
    data.mkdir(parents=True)
    for name, rows in (("test", test_rows), ("val", val_rows), ("train", [conv("q", "a")])):
        (data / f"{name}.jsonl").write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows))
    store.create_run(run_id, str(data.parent), {}, {})
    return data


def test_eval_run_takes_the_runs_held_out_split_without_a_file(store, config):
    a, b = conv("What is compost?", "Rotted greens and browns."), conv("When to water?", "In the morning.")
    data = make_run(store, config, "run-a", [a], [b])
    path, info = ev.heldout_of(store, run_id="run-a")
    assert path == data / "test.jsonl" and info == {"run": "run-a", "split": "test", "file": str(path), "note": None}
    prompts, _ = ev.load_prompts(path)
    assert prompts == [{"messages": a[:1], "expected": a[1]["content"]}]

    data = make_run(store, config, "run-b", [], [b])  # nothing in test: its val split, said so
    path, note = ev.run_heldout(store, "run-b")
    assert path == data / "val.jsonl" and "run-b holds out no test examples" in note and "val split" in note

    make_run(store, config, "run-c", [], [])
    with pytest.raises(ev.EvalError, match="run run-c holds out nothing"):
        ev.run_heldout(store, "run-c")
    with pytest.raises(ev.EvalError, match="leave out --test-file"):
        ev.heldout_of(store, "some.jsonl", None, "run-a")
    with pytest.raises(StoreError, match="no run 'run-nope'"):
        ev.heldout_of(store, run_id="run-nope")


def test_a_run_exports_whole_notes_and_eval_finds_its_held_out_file(vault, tmp_path):
    from forge.data.tokens import _bundled_copy
    from forge.train import runs
    from forge.train.spec import TrainSpec

    store, config = vault
    config = config.model_copy(update={"dataset": config.dataset.model_copy(update={"val": 0.2, "test": 0.3})})
    tok_dir = _bundled_copy(tmp_path / "base-tokenizer").parent
    run_id, run_dir = runs.create_run(store, config, TrainSpec(base_model=str(tok_dir)))
    manifest = json.loads((run_dir / "data" / "manifest.json").read_text())
    assert manifest["group_by"] == "note"
    chunk_ids = {ex.id for ex in store.examples(status="approved") if ex.note_path == HANDBOOK}
    assert sum(chunk_ids <= set(manifest["ids"][name]) for name in ("train", "val", "test")) == 1
    assert ev.run_heldout(store, run_id) == (run_dir / "data" / "test.jsonl", None)


def test_cli_eval_names_a_run_that_does_not_exist(tmp_path):
    p = forge(tmp_path / "ws", "eval", "base", "--run", "run-nope", check=False)
    assert p.returncode == 1
    assert p.stderr.strip() == "forge: error: no run 'run-nope'; `forge runs` lists them"
