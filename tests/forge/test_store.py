import pytest

from forge import curate
from forge.store import Store, StoreError


def item(key, user="hi", answer="hello there", tags=()):
    return {"extract_key": key, "source_kind": "jsonl", "source_ref": key, "tags": list(tags),
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]}


def test_wal_foreign_keys_and_migrations(store):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version >= 1
    again = Store(store.path)  # reopening runs no migration twice
    assert again.schema_version == store.schema_version
    again.close()


def test_ingest_is_idempotent_and_deduplicates_content(store):
    assert store.ingest([item("a"), item("b", user="other")])["added"] == 2
    r = store.ingest([item("a"), item("b", user="other"), item("c")])  # c repeats a's content
    assert (r["added"], r["unchanged"], r["duplicates"]) == (0, 2, 1)


def test_changed_source_updates_pending_but_never_a_human_edit(store, config):
    store.ingest([item("a"), item("b", user="q2")])
    a, b = store.ids()
    curate.edit(store, b, [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "my words"}])
    r = store.ingest([item("a", answer="new text"), item("b", user="q2", answer="changed in the note")])
    assert r["updated"] == 1 and r["kept"] == 1
    assert store.get(a).messages[1]["content"] == "new text"
    assert store.get(b).messages[1]["content"] == "my words"


def test_undo_redo_walk_the_decision_log(store, config):
    store.ingest([item("a"), item("b", user="q2")])
    a, b = store.ids()
    curate.approve(store, a, config)
    curate.reject(store, b, "off topic")
    assert store.get(b).status == "rejected" and store.get(b).reason == "off topic"
    assert store.undo()["example_ids"] == [b]
    assert store.get(b).status == "pending"
    assert store.undo()["example_ids"] == [a]
    assert store.get(a).status == "pending"
    with pytest.raises(StoreError, match="nothing to undo"):
        store.undo()
    store.redo()
    assert store.get(a).status == "approved"
    curate.approve(store, b, config)  # a new decision clears the redo stack
    with pytest.raises(StoreError, match="nothing to redo"):
        store.redo()
    kinds = [d["kind"] for d in store.decisions()]
    assert kinds.count("undo") == 2 and kinds.count("redo") == 1  # the log is append-only


def test_undo_restores_an_edit_and_its_flag(store):
    store.ingest([item("a")])
    (a,) = store.ids()
    store.edit(a, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "edited"}])
    assert store.get(a).edited
    store.undo()
    ex = store.get(a)
    assert not ex.edited and ex.messages[1]["content"] == "hello there"


def test_batch_decision_undoes_as_one(store):
    store.ingest([item(k, user=k) for k in "abcd"])
    ids = store.ids()
    store.decide("dedup", {i: {"status": "rejected", "reason": "duplicate"} for i in ids[1:]})
    assert store.counts()["rejected"] == 3
    store.undo()
    assert store.counts()["rejected"] == 0


def test_undo_sees_decisions_made_by_another_process(store, config):
    store.ingest([item("a")])
    (a,) = store.ids()
    other = Store(store.path)
    curate.approve(other, a, config)
    other.close()
    store.undo()
    assert store.get(a).status == "pending"


def test_full_text_search_tag_and_source_filters(store):
    store.ingest([item("x1", user="sourdough starter", tags=["learning/cooking"]),
                  item("x2", user="index funds", tags=["finance"])])
    x1, x2 = store.ids()
    assert store.ids(search="sourd") == [x1]        # prefix while typing
    assert store.ids(search="funds") == [x2]
    assert store.ids(tag="learning") == [x1]         # nested tags match their parent
    assert store.ids(tag="#finance") == [x2]
    assert store.ids(source="x2") == [x2]
    assert store.ids(search='"unbalanced') == []     # a half-typed query is no error


def test_approve_refuses_an_invalid_example(store, config):
    store.ingest([item("a", answer="   ")])
    (a,) = store.ids()
    with pytest.raises(curate.InvalidExample, match="empty"):
        curate.approve(store, a, config)
    assert store.get(a).status == "pending"


def test_edit_refuses_empty_turns(store):
    store.ingest([item("a")])
    (a,) = store.ids()
    with pytest.raises(curate.InvalidExample, match="turn 2 is empty"):
        curate.edit(store, a, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}])
    assert store.get(a).messages[1]["content"] == "hello there"
    assert store.decisions() == []


def truth(store):
    """The counts by a full GROUP BY, the way counts() worked before the counts table."""
    out = {s: 0 for s in ("pending", "approved", "rejected")}
    out.update(dict(store.conn.execute("SELECT status, count(*) FROM examples GROUP BY status").fetchall()))
    return {**out, "total": sum(out.values())}


def test_counts_stay_right_across_insert_decide_undo_and_delete(store, config):
    assert store.counts() == truth(store) == {"pending": 0, "approved": 0, "rejected": 0, "total": 0}
    store.ingest([item(k, user=k) for k in "abcdef"])
    assert store.bulk_insert(item(f"bulk{i}", user=f"bulk {i}") for i in range(4)) == 4
    assert store.counts() == truth(store) and store.counts()["pending"] == 10
    a, b, c, d = store.ids()[:4]
    curate.approve(store, a, config)
    curate.reject(store, b)
    store.decide("dedup", {c: {"status": "rejected"}, d: {"status": "rejected"}})
    curate.edit(store, a, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "mine"}])  # no status
    assert store.counts() == truth(store) == {"pending": 6, "approved": 1, "rejected": 3, "total": 10}
    store.undo()  # the edit
    store.undo()  # the two rejections at once
    assert store.counts() == truth(store) == {"pending": 8, "approved": 1, "rejected": 1, "total": 10}
    store.redo()
    assert store.counts() == truth(store)
    store.ingest([item("a", user="a", answer="changed in the note")])  # an update that keeps the status
    with store.transaction() as conn:  # another tool deleting rows
        conn.execute("DELETE FROM examples WHERE id IN (?, ?)", (a, store.ids()[-1]))
    assert store.counts() == truth(store) == {"pending": 5, "approved": 0, "rejected": 3, "total": 8}
    other = Store(store.path)  # another process sees the same counts
    curate.approve(other, store.ids(status="pending")[0], config)
    other.close()
    assert store.counts() == truth(store) and store.counts()["approved"] == 1
    assert store.count(status="rejected") == 3 and store.count() == 8


def test_an_old_store_gets_its_counts_once_when_migrated(tmp_path, config, monkeypatch):
    import forge.store as store_module

    path = tmp_path / "old.db"
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:4])  # forge before the counts table
    old = Store(path)
    old.ingest([item(k, user=k) for k in "abcde"])
    ids = old.ids()
    curate.approve(old, ids[0], config)
    curate.reject(old, ids[1])
    assert old.schema_version == 4 and not old.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE name='example_counts'").fetchone()
    old.close()
    monkeypatch.undo()
    new = Store(path)
    assert new.schema_version == len(store_module.MIGRATIONS)
    assert new.counts() == truth(new) == {"pending": 3, "approved": 1, "rejected": 1, "total": 5}
    curate.reject(new, ids[2])  # and the triggers keep them from then on
    new.undo()
    new.undo()
    assert new.counts() == truth(new) == {"pending": 4, "approved": 1, "rejected": 0, "total": 5}
    new.close()
    again = Store(path)  # reopening counts nothing twice
    assert again.counts() == truth(again)
    again.close()


def test_keyset_pages_under_a_filter_at_the_boundaries(store, config):
    store.ingest([item(f"k{i}", user=f"question {i} " + ("garden" if i % 2 else "budget"),
                       tags=["learning/cooking"] if i % 3 == 0 else ["work"]) for i in range(1, 13)])
    ids = store.ids()
    for i in (ids[1], ids[4], ids[8]):
        curate.approve(store, i, config)
    approved = [ids[1], ids[4], ids[8]]
    assert store.page(status="approved", limit=1) == approved[:1]  # the first
    assert store.page(status="approved", after=approved[0], limit=1) == [approved[1]]
    assert store.page(status="approved", after=approved[-1]) == []  # past the last
    assert store.page(status="approved", before=approved[0]) == []  # before the first
    assert store.page(status="approved", before=approved[-1], limit=1) == [approved[1]]
    assert store.page(status="approved", before=10**9, limit=2) == approved[1:]  # the last page, in id order
    assert store.page(status="approved", after=0, limit=10) == approved
    # a filter with no rows: empty pages both ways and a zero count
    assert store.page(status="rejected") == [] and store.page(status="rejected", after=ids[3], before=ids[9]) == []
    assert store.page(search="nowhereword") == [] and store.count(search="nowhereword") == 0
    # search, tag (nested) and search + status, in id order from an id
    garden = [i for n, i in enumerate(ids, start=1) if n % 2]
    assert store.page(search="garden", after=garden[1], limit=2) == garden[2:4]
    assert store.page(search="gard", before=garden[3]) == garden[:3]  # prefix while typing
    assert store.page(tag="learning", after=ids[2]) == [ids[5], ids[8], ids[11]]
    assert store.page(search="garden", status="approved") == [i for i in approved if i in garden]
    assert store.count(search="garden") == 6 and store.count(search="garden", cap=2) == 3  # 3: "more than 2"
    assert store.count(status="approved", below=approved[2]) == 2 and store.count(tag="learning", below=ids[5]) == 1
    # an id deleted meanwhile: paging from it still finds its neighbours, and it is in no page
    with store.transaction() as conn:
        conn.execute("DELETE FROM examples WHERE id=?", (approved[1],))
    assert store.page(status="approved", after=approved[1], limit=1) == [approved[2]]
    assert store.page(status="approved", before=approved[1], limit=1) == [approved[0]]
    assert store.page(status="approved") == [approved[0], approved[2]]
    assert store.page(search="question", after=approved[1] - 1, limit=1) == [approved[1] + 1]
    assert store.count(status="approved") == 2
    with pytest.raises(StoreError, match="unknown status"):
        store.page(status="maybe")


def test_pages_use_the_index_of_their_filter(store):
    """A status filter walks the (status, id) index and a search the full-text index in rowid order: neither
    sorts its matches or reads the rows it skips."""
    plan = lambda **kw: " | ".join(r[3] for r in store.conn.execute(  # noqa: E731
        "EXPLAIN QUERY PLAN " + store.page_sql(**kw)[0], store.page_sql(**kw)[1]))
    assert "COVERING INDEX examples_status (status=? AND id>?)" in plan(status="pending", after=5)
    assert "PRIMARY KEY (rowid<?)" in plan(before=5)
    searched = plan(search="garden", status="pending", after=5)
    assert searched.startswith("SCAN examples_fts VIRTUAL TABLE") and "PRIMARY KEY (rowid=?)" in searched
    assert all("TEMP B-TREE" not in plan(**kw) for kw in ({"status": "approved", "after": 1}, {"search": "x"},
                                                          {"search": "x", "before": 9}, {}))
