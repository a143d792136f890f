import json

import pytest

from forge.data import curate
from forge.data.dataset import DatasetError, export_dataset


def approve_all(store, config):
    for i in store.ids():
        curate.approve(store, i, config)


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_writes_disjoint_splits_manifest_and_stable_hash(sample_store, config, tmp_path):
    approve_all(sample_store, config)
    n = sample_store.counts()["approved"]
    r = export_dataset(sample_store, tmp_path / "ds", config)
    assert r["train"] + r["val"] + r["test"] == n
    assert r["val"] == round(n * 0.1) and r["test"] == round(n * 0.1)
    rows = {name: read(tmp_path / "ds" / f"{name}.jsonl") for name in ("train", "val", "test")}
    seen = [json.dumps(x, sort_keys=True) for part in rows.values() for x in part]
    assert len(seen) == len(set(seen)) == n
    assert all(set(x) == {"messages"} for x in rows["train"])
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["dataset_hash"] == r["dataset_hash"] and manifest["seed"] == 42
    assert not set(manifest["ids"]["train"]) & set(manifest["ids"]["test"])
    again = export_dataset(sample_store, tmp_path / "ds2", config)
    assert again == r
    assert (tmp_path / "ds2" / "test.jsonl").read_text() == (tmp_path / "ds" / "test.jsonl").read_text()


def test_hash_covers_content_and_seed_changes_split(sample_store, config, tmp_path):
    approve_all(sample_store, config)
    a = export_dataset(sample_store, tmp_path / "a", config)
    b = export_dataset(sample_store, tmp_path / "b", config, seed=7)
    assert a["dataset_hash"] == b["dataset_hash"]
    assert (tmp_path / "a" / "test.jsonl").read_text() != (tmp_path / "b" / "test.jsonl").read_text()
    first = sample_store.ids()[0]
    ex = sample_store.get(first)
    curate.edit(sample_store, first, ex.messages[:-1] + [{"role": "assistant", "content": "changed"}])
    assert export_dataset(sample_store, tmp_path / "c", config)["dataset_hash"] != a["dataset_hash"]


def test_alpaca_format(sample_store, config, tmp_path):
    approve_all(sample_store, config)
    export_dataset(sample_store, tmp_path / "al", config, fmt="alpaca")
    row = read(tmp_path / "al" / "train.jsonl")[0]
    assert set(row) == {"instruction", "input", "output"} and row["output"]


def test_nothing_approved_is_a_clear_error(store, config, tmp_path):
    with pytest.raises(DatasetError, match="no approved examples"):
        export_dataset(store, tmp_path / "x", config)


def test_bad_fractions_are_refused(sample_store, config, tmp_path):
    approve_all(sample_store, config)
    with pytest.raises(DatasetError, match="less than 1"):
        export_dataset(sample_store, tmp_path / "x", config, val=0.6, test=0.5)
