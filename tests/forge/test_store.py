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
