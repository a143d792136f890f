import pytest

from forge.data import curate
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
    import forge.store.db as store_module

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


def test_source_filter_is_a_literal_case_blind_substring_kept_up_to_date(store):
    """The source filter reads the trigram index of "kind:ref" (3+ characters) and checks shorter ones row by row;
    either way it is a plain substring: `_` and `%` in a file name are not wildcards."""
    rows = [dict(item(f"k{i}", user=f"q{i}"), source_kind="csv", source_ref=ref) for i, ref in enumerate(
        ["notes/My_Week.csv:2", "notes/myXweek.csv:3", "Daily 100%.csv:9", "daily.csv:19", "other.csv:1"])]
    store.ingest(rows)
    ids = store.ids()
    src = lambda s, **kw: store.page(source=s, **kw)  # noqa: E731
    assert src("my_week") == [ids[0]]  # not myXweek: `_` is literal; and case does not matter
    assert src("100%") == [ids[2]] and src("DAILY") == ids[2:4] and src("csv:1") == [ids[3], ids[4]]
    assert src("y_") == [ids[0]] and src("%") == [ids[2]]  # two characters and less: the row-by-row path
    assert src("csv:1", after=ids[3]) == [ids[4]] and store.count(source="daily") == 2
    assert src("daily", search="q3") == [ids[3]] and src("daily", search="q1") == []  # beside a search
    # A re-import that moves an example to another line, and a deletion: the index follows both.
    store.ingest([dict(rows[3], source_ref="daily.csv:42", messages=rows[3]["messages"][:1] + [
        {"role": "assistant", "content": "changed"}])])
    assert src("daily.csv:42") == [ids[3]] and src("daily.csv:19") == []
    with store.transaction() as c:
        c.execute("DELETE FROM examples WHERE id=?", (ids[2],))
    assert src("daily") == [ids[3]]
    plan = " | ".join(r[3] for r in store.conn.execute("EXPLAIN QUERY PLAN " + store.page_sql(source="daily")[0],
                                                         store.page_sql(source="daily")[1]))
    assert plan.startswith("SCAN examples_src VIRTUAL TABLE") and "TEMP B-TREE" not in plan


def test_search_matches_a_single_letter_as_a_word_and_two_as_a_prefix(store):
    store.ingest([item("a", user="plan b for the garden"), item("b", user="buy bulbs"), item("c", user="x")])
    a, b, _ = store.ids()
    assert store.page(search="b") == [a]  # the word "b", not every word starting with b
    assert store.page(search="bu") == [b] and store.page(search="garden b") == [a]


def test_a_store_from_before_the_search_indexes_is_migrated_with_its_rows(tmp_path):
    """A workspace made by an earlier forge (schema 5): opening it builds the prefix and source indexes over
    what it holds, and nothing is lost."""
    import sqlite3

    from forge.store import db as store_mod

    old = Store.__new__(Store)  # a store stopped at migration 5
    path = tmp_path / "forge.db"
    migrations, store_mod.MIGRATIONS = store_mod.MIGRATIONS, store_mod.MIGRATIONS[:5]
    try:
        old.__init__(path)
        old.ingest([dict(item(f"k{i}", user=f"gardening note {i}"), source_ref=f"vault/n{i}.md") for i in range(30)])
        assert old.schema_version == 5
        old.close()
    finally:
        store_mod.MIGRATIONS = migrations
    s = Store(path)
    assert s.schema_version == len(migrations) and s.counts()["total"] == 30
    assert len(s.page(search="garde", limit=100)) == 30 and s.page(source="n7.md") == s.page(search="7")
    names = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert {"examples_ai", "examples_ad", "examples_au", "examples_src_ai", "examples_src_ad"} <= names
    s.close()


def test_a_store_with_short_prefix_indexes_gets_the_long_ones_and_keeps_its_rows(tmp_path, monkeypatch):
    """A workspace from the forge that indexed prefixes of 2-6 letters only (schema 6): opening it rebuilds the
    full-text index with prefix indexes up to 12 letters, so a long half-typed word is one index read; the rows,
    their decisions and every search answer stay as they were."""
    from forge.store import db as store_mod

    path = tmp_path / "forge.db"
    old_sql = store_mod.FTS_SQL.replace(store_mod.FTS_PREFIXES, "2 3 4 5 6")
    with monkeypatch.context() as m:  # the forge of schema 6
        m.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:6])
        m.setattr(store_mod, "FTS_SQL", old_sql)
        old = Store(path)
        old.ingest([item(f"k{i}", user=f"{'statements' if i % 3 else 'stationery'} note {i}") for i in range(30)])
        old.set_status(old.ids()[0], "approved")
        answers = {q: old.ids(search=q) for q in ("statemen", "stationer", "stationery", "note", "st")}
        assert old.schema_version == 6 and len(answers["statemen"]) == 20 and len(answers["stationer"]) == 10
        old.close()
    s = Store(path)
    assert s.schema_version == len(store_mod.MIGRATIONS)
    sql = s.conn.execute("SELECT sql FROM sqlite_master WHERE name='examples_fts'").fetchone()[0]
    assert "prefix='2 3 4 5 6 7 8 9 10 11 12'" in sql
    assert {q: s.ids(search=q) for q in answers} == answers
    assert s.counts()["approved"] == 1 and s.counts()["total"] == 30
    s.close()


def test_search_follows_edits_and_their_undo_while_decisions_leave_the_index_alone(store, config):
    store.ingest([item("a", user="water the ferns"), item("b", user="call the plumber")])
    a, b = store.ids()
    fts_rows = lambda: store.conn.execute("SELECT count(*) FROM examples_fts_data").fetchone()[0]  # noqa: E731
    before = fts_rows()
    curate.approve(store, a, config)
    curate.reject(store, b)
    store.undo()
    assert fts_rows() == before  # a decision writes no full-text entries (it once rewrote them all)
    assert store.page(search="ferns", status="approved") == [a]
    curate.edit(store, a, [{"role": "user", "content": "water the orchids"}, {"role": "assistant", "content": "ok"}])
    assert store.page(search="orchid") == [a] and store.page(search="ferns") == []
    store.undo()
    assert store.page(search="ferns") == [a] and store.page(search="orchid") == []
    assert store.get(a).status == "approved" and not store.get(a).edited


def test_a_word_typed_letter_by_letter_keeps_its_examples_on_screen(store):
    """The index holds Porter stems, so `meeti*` matched no stem (the index has `meet`) and the results vanished
    while a person typed `meeting`, to come back at the last letter. Each prefix now finds them; a typo past a stem
    (`meetzz`) still finds nothing, and a word in the middle of a query is matched as before."""
    texts = ["The weekly meeting moved to Tuesday.", "More information about the dinner.", "She was running late.",
             "Stopping the process.", "Happiness is a warm cup."]
    store.ingest([{"extract_key": f"k{i}", "source_kind": "jsonl", "source_ref": f"f:{i}", "tags": [],
                   "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": t}]}
                  for i, t in enumerate(texts)])
    for word, row in [("meeting", 0), ("information", 1), ("running", 2), ("stopping", 3), ("happiness", 4)]:
        want = [store.ids()[row]]
        for k in range(3, len(word) + 1):
            assert store.ids(search=word[:k]) == want, word[:k]
        assert store.ids(search=f"weekly {word[:5]}") == (want if word == "meeting" else [])
    assert store.ids(search="meetzz") == [] and store.ids(search="zzzzz") == []
    # The cut word stays a prefix: `rati` (towards `rating`) finds `rat` and `rating` alike, not only the shorter one.
    store.ingest([{"extract_key": f"r{i}", "source_kind": "jsonl", "source_ref": f"r:{i}", "tags": [],
                   "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": t}]}
                  for i, t in enumerate(["Five star rating.", "A rat ran."])])
    rating, rat = store.ids()[-2:]
    assert set(store.ids(search="rati")) == set(store.ids(search="ratin")) == {rating, rat}
    assert store.ids(search="rating") == [rating]
    assert store.count(search="meetin") == 1 and store.page(search="informatio") == [store.ids()[1]]
