"""The workspace database: examples, the append-only decision log that drives undo/redo, and room for the
embeddings, runs, models and evals of later stages.

SQLite through sqlite-utils, in WAL mode with a busy timeout and foreign keys on. Every decision is one
`BEGIN IMMEDIATE … COMMIT` transaction that returns only after the commit, so a process killed at any moment
keeps everything it acknowledged.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from forge.errors import ForgeError

STATUSES = ("pending", "approved", "rejected")
DB_NAME = "forge.db"


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def canonical_messages(messages: list[dict]) -> str:
    return json.dumps([{"role": m["role"], "content": m["content"]} for m in messages],
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def content_hash(messages: list[dict]) -> str:
    return hashlib.sha256(canonical_messages(messages).encode("utf-8")).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def flatten(messages: list[dict]) -> str:
    return "\n\n".join(m["content"] for m in messages)


MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")  # registry ids: never a path


class StoreError(ForgeError):
    """A request the store refuses (unknown id, nothing to undo, invalid example); the message says why."""


@dataclass
class Example:
    id: int
    source_kind: str
    source_ref: str
    note_path: str | None
    heading: str | None
    line: int | None
    tags: list[str]
    messages: list[dict]
    content_hash: str
    status: str
    edited: bool
    reason: str | None
    created_at: str
    updated_at: str
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict) -> "Example":
        return cls(
            id=row["id"], source_kind=row["source_kind"], source_ref=row["source_ref"],
            note_path=row["note_path"], heading=row["heading"], line=row["line"],
            tags=json.loads(row["tags"]), messages=json.loads(row["messages"]),
            content_hash=row["content_hash"], status=row["status"], edited=bool(row["edited"]),
            reason=row["reason"], created_at=row["created_at"], updated_at=row["updated_at"],
            meta=json.loads(row["meta"] or "{}"),
        )

    @property
    def source(self) -> str:
        return f"{self.source_kind}:{self.source_ref}"

    def to_json(self) -> dict:
        return {"id": self.id, "status": self.status, "source": self.source, "tags": self.tags,
                "messages": self.messages, "edited": self.edited, "reason": self.reason,
                "note_path": self.note_path, "heading": self.heading, "line": self.line}


# Each migration runs once, in order; PRAGMA user_version records how many have run.
def _m1_core(db) -> None:
    db.executescript("""
    CREATE TABLE examples (
        id INTEGER PRIMARY KEY,
        source_kind TEXT NOT NULL,
        source_ref TEXT NOT NULL,
        extract_key TEXT NOT NULL UNIQUE,
        note_path TEXT,
        heading TEXT,
        line INTEGER,
        tags TEXT NOT NULL DEFAULT '[]',
        messages TEXT NOT NULL,
        text TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        source_hash TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','approved','rejected')),
        edited INTEGER NOT NULL DEFAULT 0,
        reason TEXT,
        meta TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX examples_status ON examples(status, id);
    CREATE INDEX examples_hash ON examples(content_hash);
    CREATE INDEX examples_source ON examples(source_kind);
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('do','undo','redo')),
        action TEXT NOT NULL,
        target INTEGER REFERENCES decisions(id),
        example_ids TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        reason TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE embeddings (
        model TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (model, content_hash)
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        run_dir TEXT NOT NULL,
        spec TEXT NOT NULL DEFAULT '{}',
        meta TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE models (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        path TEXT NOT NULL,
        quant TEXT,
        bytes INTEGER,
        sha256 TEXT,
        run_id TEXT REFERENCES runs(id),
        status TEXT NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
    );
    CREATE TABLE evals (
        id INTEGER PRIMARY KEY,
        model_id TEXT NOT NULL,
        dataset TEXT NOT NULL,
        metrics TEXT NOT NULL DEFAULT '{}',
        outputs TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL
    );
    """)
    db["examples"].enable_fts(["text", "tags"], fts_version="FTS5", create_triggers=True, tokenize="porter")


def _m2_votes(db) -> None:
    db.executescript("""
    CREATE TABLE votes (
        id INTEGER PRIMARY KEY,
        model_id TEXT NOT NULL,
        baseline_id TEXT NOT NULL,
        dataset TEXT NOT NULL,
        prompt_index INTEGER NOT NULL,
        vote TEXT NOT NULL CHECK (vote IN ('model','baseline','tie')),
        created_at TEXT NOT NULL,
        UNIQUE (model_id, baseline_id, dataset, prompt_index)
    );
    """)


def _m3_distinct(db) -> None:
    # Pairs a person marked "not duplicates" (Dedup's keep all): never offered as a cluster again.
    db.executescript("""
    CREATE TABLE distinct_pairs (
        a INTEGER NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
        b INTEGER NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        PRIMARY KEY (a, b),
        CHECK (a < b)
    );
    """)


def _m4_sources(db) -> None:
    # The filter a person chose for a source (a vault's tags and folders), so a re-import uses it again.
    db.executescript("""
    CREATE TABLE sources (
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '{}',
        last_report TEXT NOT NULL DEFAULT '{}',
        updated_at TEXT NOT NULL,
        PRIMARY KEY (kind, path)
    );
    """)


def _m5_counts(db) -> None:
    # Examples by status, kept by triggers so the status bar's counts cost one read however large the store; an
    # existing store is counted once, here.
    db.executescript("""
    CREATE TABLE example_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO example_counts (status, n)
        SELECT s.value, (SELECT count(*) FROM examples WHERE status = s.value)
        FROM json_each('["pending","approved","rejected"]') s;
    CREATE TRIGGER examples_count_insert AFTER INSERT ON examples BEGIN
        UPDATE example_counts SET n = n + 1 WHERE status = new.status;
    END;
    CREATE TRIGGER examples_count_delete AFTER DELETE ON examples BEGIN
        UPDATE example_counts SET n = n - 1 WHERE status = old.status;
    END;
    CREATE TRIGGER examples_count_update AFTER UPDATE OF status ON examples WHEN old.status IS NOT new.status BEGIN
        UPDATE example_counts SET n = n - 1 WHERE status = old.status;
        UPDATE example_counts SET n = n + 1 WHERE status = new.status;
    END;
    """)


# The full-text index with prefix indexes for 2-12 letters: a half-typed word (the search box matches its last word
# as a prefix) is then one index entry read in rowid order, where FTS5 without one collects every match of the
# prefix first (a word in most examples: ~60 ms at 1M examples, <1 ms with; a 7-letter prefix of a word in a third
# of them: 12-22 ms with indexes for 2-6 letters only). A one-letter last word is matched whole (fts_query). The
# indexes for 2-6 letters make the full-text index ~6x larger (1 GB at 1M examples); those for 7-12 add ~4 % more
# (words that long are few), and a prefix of 13+ letters uses the plain index.
FTS_PREFIXES = " ".join(str(n) for n in range(2, 13))
FTS_SQL = (f"CREATE VIRTUAL TABLE examples_fts USING fts5(text, tags, tokenize='porter', content='examples', "
           f"prefix='{FTS_PREFIXES}')")
# Where an example came from, as the source filter matches it (a substring of "kind:ref"), in a trigram index:
# the filter then reads the matching rows only, where LIKE '%…%' walks the table (0.5 s for a rare source at 1M).
# Contentless: the strings are short and derived, the triggers below keep it.
SOURCE_EXPR = "{t}.source_kind || ':' || {t}.source_ref"
SOURCE_FTS_TRIGGERS = {
    "examples_src_ai": "AFTER INSERT ON examples BEGIN "
                       "INSERT INTO examples_src (rowid, source) VALUES (new.id, {new}); END",
    "examples_src_ad": "AFTER DELETE ON examples BEGIN INSERT INTO examples_src (examples_src, rowid, source) "
                       "VALUES ('delete', old.id, {old}); END",
    "examples_src_au": "AFTER UPDATE OF source_kind, source_ref ON examples BEGIN "
                       "INSERT INTO examples_src (examples_src, rowid, source) VALUES ('delete', old.id, {old}); "
                       "INSERT INTO examples_src (rowid, source) VALUES (new.id, {new}); END",
}


def _source_trigger(name: str) -> str:
    return (f"CREATE TRIGGER {name} " + SOURCE_FTS_TRIGGERS[name].format(new=SOURCE_EXPR.format(t="new"),
                                                                          old=SOURCE_EXPR.format(t="old")))


def _rebuild_fts(c, what: str) -> None:
    """Drop and rebuild the full-text index from the examples table (its triggers stay)."""
    n = c.execute("SELECT count(*) FROM examples").fetchone()[0]
    if n > 50_000:  # minutes for a large store: say so rather than look frozen (once, on the first open)
        print(f"forge: building {what} for {n:,} examples (once; about 4 minutes per million)…",
              file=sys.stderr, flush=True)
    c.execute("DROP TABLE examples_fts")
    c.execute(FTS_SQL)
    c.execute("INSERT INTO examples_fts (examples_fts) VALUES ('rebuild')")


def _m6_search_indexes(db) -> None:
    # Rebuilds the full-text index with its prefix indexes; its update trigger fires on text and tag changes only
    # (a decision no longer rewrites the example's index entry); adds the source index. One pass over the store
    # (about four minutes per million examples).
    c = db.conn
    _rebuild_fts(c, "the search indexes")
    c.execute("DROP TRIGGER IF EXISTS examples_au")
    c.execute('CREATE TRIGGER examples_au AFTER UPDATE OF text, tags ON examples BEGIN '
              'INSERT INTO examples_fts (examples_fts, rowid, text, tags) VALUES (\'delete\', old.id, old.text, old.tags); '
              'INSERT INTO examples_fts (rowid, text, tags) VALUES (new.id, new.text, new.tags); END')
    c.execute("CREATE VIRTUAL TABLE examples_src USING fts5(source, tokenize='trigram', content='')")
    c.execute(f"INSERT INTO examples_src (rowid, source) SELECT id, {SOURCE_EXPR.format(t='examples')} FROM examples")
    for name in SOURCE_FTS_TRIGGERS:
        c.execute(_source_trigger(name))


def _m7_long_prefixes(db) -> None:
    # Prefix indexes up to 12 letters (migration 6 made them for 2-6). Nothing to do where migration 6 has just
    # built the index with today's FTS_SQL.
    c = db.conn
    if c.execute("SELECT sql FROM sqlite_master WHERE name = 'examples_fts'").fetchone()[0] != FTS_SQL:
        _rebuild_fts(c, "the search indexes for long prefixes")


MIGRATIONS = [_m1_core, _m2_votes, _m3_distinct, _m4_sources, _m5_counts, _m6_search_indexes,
              _m7_long_prefixes]


class Store:
    """One workspace database. Safe to share between the UI thread and workers: writes are serialised by a
    lock and each is its own immediate transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        self.conn = conn
        self.lock = threading.RLock()
        self._stack_seen = 0
        self._done: list[int] = []
        self._undone: list[int] = []
        self._migrate()

    @classmethod
    def for_workspace(cls, workspace: str | Path) -> "Store":
        ws = Path(workspace)
        for sub in ("runs", "models", "exports"):
            (ws / sub).mkdir(parents=True, exist_ok=True)
        return cls(ws / DB_NAME)

    def close(self) -> None:
        self.conn.close()

    # ---- plumbing -------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            else:
                self.conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self.lock:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for i, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    # Re-check under the write lock: another process may have migrated meanwhile.
                    if self.conn.execute("PRAGMA user_version").fetchone()[0] >= i:
                        self.conn.execute("ROLLBACK")
                        continue
                    migration(self.db())
                    self.conn.execute(f"PRAGMA user_version={i}")
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise

    def db(self):
        """A sqlite-utils view of the same connection (imported on demand: it pulls in pandas when present,
        a third of a second that start-up does not need)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    # ---- reading --------------------------------------------------------------------------------------
    def get(self, example_id: int) -> Example:
        with self.lock:
            row = self.conn.execute("SELECT * FROM examples WHERE id=?", (example_id,)).fetchone()
        if row is None:
            raise StoreError(f"no example with id {example_id}")
        return Example.from_row(dict(row))

    def counts(self) -> dict[str, int]:
        """Examples by status and in total: one read of the trigger-kept example_counts table."""
        with self.lock:
            rows = self.conn.execute("SELECT status, n FROM example_counts").fetchall()
        out = {s: 0 for s in STATUSES}
        out.update({r[0]: r[1] for r in rows})
        out["total"] = sum(out[s] for s in STATUSES)
        return out

    def _filter(self, status: str | None = None, tag: str | None = None, source: str | None = None,
                search: str | None = None) -> tuple[str, str, list[str], list]:
        """(FROM clause, id column, WHERE conditions, parameters) for the examples matching every given filter.

        A search drives the query from the full-text index, in rowid order (FTS5 serves `rowid > ?` and
        ORDER BY rowid itself), and looks each hit up by primary key, so the first page of a word found in a
        million examples costs what a page costs. Without one, a status filter walks the (status, id) index."""
        where, params = [], []
        if search and search.strip():
            frm, key = "examples_fts CROSS JOIN examples ON examples.id = examples_fts.rowid", "examples_fts.rowid"
            where.append("examples_fts MATCH ?")
            params.append(self._typed_query(search))
        else:
            frm, key = "examples", "examples.id"
        if status:
            if status not in STATUSES:
                raise StoreError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
            where.append("examples.status = ?")
            params.append(status)
        if tag:
            tag = tag.lstrip("#").lower()
            where.append("EXISTS (SELECT 1 FROM json_each(examples.tags) t "
                         "WHERE t.value = ? OR t.value LIKE ? ESCAPE '\\')")
            params += [tag, tag.replace("%", r"\%").replace("_", r"\_") + "/%"]
        if source and frm == "examples" and len(source) >= 3:
            # Driven from the trigram index of sources, in rowid order: a phrase of trigrams is the substring.
            frm, key = "examples_src CROSS JOIN examples ON examples.id = examples_src.rowid", "examples_src.rowid"
            where.insert(0, "examples_src MATCH ?")
            params.insert(0, '"' + source.replace('"', '""') + '"')
        elif source:  # beside a search (which drives), or too short for trigrams: checked row by row
            where.append(f"({SOURCE_EXPR.format(t='examples')}) LIKE ? ESCAPE '\\'")
            params.append("%" + source.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%")
        return frm, key, where, params

    def _typed_query(self, search: str) -> str:
        """fts_query(search), or, when its last word (a prefix, still being typed) matches nothing because the index
        holds Porter stems, the same query with that word cut back to the longest stem it extends.

        Typing `meeting` letter by letter: `meet*` finds meetings, but `meeti*` and `meetin*` found nothing (the index
        holds `meet`, and no stem starts with `meeti`) until the word was whole. Now `meeti` is read as `meet*` (the
        cut must leave the start of an English suffix: `meetzz` is not cut), so results stay on screen as the person
        types; a whole word missing from the index reads as its stem too (`singer` finds `sings`). One indexed LIMIT
        1 probe per cut (at most 5)."""
        query = fts_query(search)
        m = re.search(r'"([^"]+)"\*$', query)
        if m is None or self._any_match(query):
            return query
        word = m.group(1)
        for k in range(len(word) - 1, max(2, len(word) - 6), -1):
            stem, tail = word[:k], word[k:].lower()
            if tail[0] == stem[-1].lower():
                tail = tail[1:]  # running: run + n + ing (Porter undoes the doubled consonant)
            if tail and not any(suffix.startswith(tail) for suffix in _SUFFIXES):
                continue  # `meetzz` is not `meet` + the start of a suffix: a typo finds nothing, as before
            cut = query[:m.start()] + f'"{stem}"*'
            if self._any_match(cut):
                return cut
        return query

    def _any_match(self, query: str) -> bool:
        with self.lock:
            try:
                return self.conn.execute("SELECT 1 FROM examples_fts WHERE examples_fts MATCH ? LIMIT 1",
                                         (query,)).fetchone() is not None
            except sqlite3.OperationalError:
                return True  # let the real query report what is wrong with it

    def _query(self, sql: str, params: list, search: str | None) -> list:
        with self.lock:
            try:
                return self.conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as e:  # an FTS5 query it cannot parse
                raise StoreError(f"search {search!r}: {e}") from None

    def ids(self, status: str | None = None, tag: str | None = None, source: str | None = None,
            search: str | None = None) -> list[int]:
        """All ids matching every given filter, in id order. `search` is an FTS5 query over text and tags; plain
        words are matched as prefixes, so a half-typed word already finds something. For a screen, `page` reads
        only what it shows."""
        frm, key, where, params = self._filter(status, tag, source, search)
        sql = f"SELECT {key} FROM {frm}" + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY {key}"
        return [r[0] for r in self._query(sql, params, search)]

    def page_sql(self, status: str | None = None, tag: str | None = None, source: str | None = None,
                 search: str | None = None, after: int | None = None, before: int | None = None,
                 limit: int = 50) -> tuple[str, list]:
        """The SQL and parameters `page` runs (for EXPLAIN QUERY PLAN and the benchmark's bare comparison)."""
        frm, key, where, params = self._filter(status, tag, source, search)
        if after is not None:
            where.append(f"{key} > ?")
            params.append(after)
        if before is not None:
            where.append(f"{key} < ?")
            params.append(before)
        order = "DESC" if before is not None and after is None else "ASC"
        sql = (f"SELECT {key} FROM {frm}" + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY {key} {order} LIMIT ?")
        return sql, params + [limit]

    def page(self, status: str | None = None, tag: str | None = None, source: str | None = None,
             search: str | None = None, after: int | None = None, before: int | None = None,
             limit: int = 50) -> list[int]:
        """Up to `limit` ids matching the filters, in id order (keyset paging: never reads the ids it skips).
        `after`: the first ones above that id; `before` alone: the last ones below it; neither: the first ones.
        Neither id has to exist any more."""
        sql, params = self.page_sql(status, tag, source, search, after, before, limit)
        ids = [r[0] for r in self._query(sql, params, search)]
        return ids[::-1] if before is not None and after is None else ids

    def count(self, status: str | None = None, tag: str | None = None, source: str | None = None,
              search: str | None = None, below: int | None = None, cap: int | None = None) -> int:
        """How many examples match the filters (with `below`: how many of them have a smaller id). Only the
        status filter is answered from example_counts; anything else is counted row by row, and stops at
        cap + 1 when a cap is given (so a result over `cap` means "more than cap")."""
        if below is None and not (tag or source or (search and search.strip())):
            c = self.counts()
            if status and status not in STATUSES:
                raise StoreError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
            return c[status] if status else c["total"]
        frm, key, where, params = self._filter(status, tag, source, search)
        if below is not None:
            where.append(f"{key} < ?")
            params.append(below)
        inner = f"SELECT 1 FROM {frm}" + (" WHERE " + " AND ".join(where) if where else "")
        if cap is not None:
            inner += " LIMIT ?"
            params.append(cap + 1)
        return self._query(f"SELECT count(*) FROM ({inner})", params, search)[0][0]

    def examples(self, ids: Iterable[int] | None = None, status: str | None = None) -> list[Example]:
        with self.lock:
            if ids is not None:
                ids = list(ids)
                rows = []
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    rows += self.conn.execute(
                        f"SELECT * FROM examples WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
                by_id = {r["id"]: r for r in rows}
                return [Example.from_row(dict(by_id[i])) for i in ids if i in by_id]
            sql, params = "SELECT * FROM examples", []
            if status:
                sql += " WHERE status=?"
                params.append(status)
            return [Example.from_row(dict(r)) for r in self.conn.execute(sql + " ORDER BY id", params)]

    def all_tags(self) -> list[str]:
        with self.lock:
            return [r[0] for r in self.conn.execute(
                "SELECT DISTINCT t.value FROM examples, json_each(examples.tags) t ORDER BY 1")]

    # ---- sources ---------------------------------------------------------------------------------------
    def source_options(self, kind: str, path: str) -> dict | None:
        """The options remembered for a source (e.g. a vault's tag and folder filter), or None."""
        with self.lock:
            row = self.conn.execute("SELECT options FROM sources WHERE kind=? AND path=?", (kind, path)).fetchone()
        return json.loads(row[0]) if row else None

    def remember_source(self, kind: str, path: str, options: dict | None = None, report: dict | None = None) -> None:
        """Store a source's options (None keeps the stored ones) and the summary of its latest import."""
        with self.transaction() as c:
            row = c.execute("SELECT options FROM sources WHERE kind=? AND path=?", (kind, path)).fetchone()
            opts = options if options is not None else (json.loads(row[0]) if row else {})
            c.execute("INSERT INTO sources (kind, path, options, last_report, updated_at) VALUES (?,?,?,?,?) "
                      "ON CONFLICT (kind, path) DO UPDATE SET options=excluded.options, "
                      "last_report=excluded.last_report, updated_at=excluded.updated_at",
                      (kind, path, json.dumps(opts, ensure_ascii=False),
                       json.dumps(report or {}, ensure_ascii=False, default=str), now()))

    def last_import(self) -> dict | None:
        """The newest import's summary ({kind, path, report}), for a screen that found nothing to show."""
        with self.lock:
            row = self.conn.execute("SELECT kind, path, last_report FROM sources ORDER BY updated_at DESC, "
                                    "rowid DESC LIMIT 1").fetchone()
        return {"kind": row[0], "path": row[1], "report": json.loads(row[2])} if row else None

    # ---- extraction writes ------------------------------------------------------------------------------
    def ingest(self, items: list[dict]) -> dict[str, int]:
        """Insert or refresh extracted items in one transaction.

        Each item has extract_key, source_kind, source_ref, messages, tags and optionally note_path, heading,
        line, meta. Same content → unchanged. Changed source → a pending, unedited example is updated; an
        edited or already decided one is kept as the human left it (counted as `kept`). Content already
        present under another key is a duplicate and not added again."""
        counts = {"added": 0, "updated": 0, "unchanged": 0, "kept": 0, "duplicates": 0}
        ts = now()
        with self.transaction() as c:
            existing = {r[0]: r for r in self._select_in(
                c, "SELECT extract_key, id, source_hash, status, edited FROM examples WHERE extract_key IN ({})",
                [it["extract_key"] for it in items])}
            hashes = [content_hash(it["messages"]) for it in items]
            present = {r[0] for r in self._select_in(
                c, "SELECT DISTINCT content_hash FROM examples WHERE content_hash IN ({})",
                [h for it, h in zip(items, hashes) if it["extract_key"] not in existing])}
            inserts, updates = [], []
            for it, h in zip(items, hashes):
                msgs = it["messages"]
                row = existing.get(it["extract_key"])
                if row is None or row[2] != h:
                    if row is None and h in present:
                        counts["duplicates"] += 1
                        continue
                    common = (json.dumps(it.get("tags", []), ensure_ascii=False), canonical_messages(msgs),
                              flatten(msgs), h, h, it.get("note_path"), it.get("heading"), it.get("line"),
                              it["source_ref"], json.dumps(it.get("meta", {}), ensure_ascii=False, default=str))
                if row is None:
                    present.add(h)
                    inserts.append(common + (it["extract_key"], it["source_kind"], ts, ts))
                    counts["added"] += 1
                elif row[2] == h:
                    counts["unchanged"] += 1
                elif row[3] == "pending" and not row[4]:
                    updates.append(common + (ts, row[1]))
                    counts["updated"] += 1
                else:
                    counts["kept"] += 1
            c.executemany(
                "INSERT INTO examples (tags, messages, text, content_hash, source_hash, note_path, heading, line, "
                "source_ref, meta, extract_key, source_kind, status, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?, 'pending', ?, ?)", inserts)
            c.executemany(
                "UPDATE examples SET tags=?, messages=?, text=?, content_hash=?, source_hash=?, note_path=?, "
                "heading=?, line=?, source_ref=?, meta=?, updated_at=? WHERE id=?", updates)
        return counts

    def bulk_insert(self, items: Iterable[dict]) -> int:
        """Add many new pending examples in one transaction: rows by executemany, then the full-text index
        filled in one pass over them (its per-row trigger is off meanwhile; the status counts stay per row,
        one cheap UPDATE each). Nothing is compared with what is stored: for content known to be new (a first
        import, a benchmark); a repeated extract_key raises and adds nothing. Returns the number added."""
        ts = now()

        def rows():
            for it in items:
                msgs = it["messages"]
                h = content_hash(msgs)
                yield (json.dumps(it.get("tags", []), ensure_ascii=False), canonical_messages(msgs), flatten(msgs),
                       h, h, it.get("note_path"), it.get("heading"), it.get("line"), it["source_ref"],
                       json.dumps(it.get("meta", {}), ensure_ascii=False, default=str), it["extract_key"],
                       it["source_kind"], ts, ts)

        with self.transaction() as c:
            triggers = dict(c.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger' AND name IN "
                                      "('examples_ai', 'examples_src_ai')").fetchall())
            first = c.execute("SELECT coalesce(max(id), 0) FROM examples").fetchone()[0]
            cache = c.execute("PRAGMA cache_size").fetchone()[0]
            c.execute("PRAGMA cache_size=-262144")  # 256 MB while the indexes grow by random keys
            try:
                for name in triggers:
                    c.execute(f"DROP TRIGGER {name}")
                cur = c.executemany(
                    "INSERT INTO examples (tags, messages, text, content_hash, source_hash, note_path, heading, line, "
                    "source_ref, meta, extract_key, source_kind, status, created_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?, 'pending', ?, ?)", rows())
                added = cur.rowcount
                if "examples_ai" in triggers:
                    c.execute("INSERT INTO examples_fts (rowid, text, tags) "
                              "SELECT id, text, tags FROM examples WHERE id > ?", (first,))
                if "examples_src_ai" in triggers:
                    c.execute(f"INSERT INTO examples_src (rowid, source) "
                              f"SELECT id, {SOURCE_EXPR.format(t='examples')} FROM examples WHERE id > ?", (first,))
                for sql in triggers.values():
                    c.execute(sql)
            finally:
                c.execute(f"PRAGMA cache_size={cache}")
        return added

    @staticmethod
    def _select_in(c: sqlite3.Connection, sql: str, values: list, chunk: int = 900) -> list:
        rows = []
        for i in range(0, len(values), chunk):
            part = values[i:i + chunk]
            rows += c.execute(sql.format(",".join("?" * len(part))), part).fetchall()
        return rows

    def content_hashes(self) -> set[str]:
        with self.lock:
            return {r[0] for r in self.conn.execute("SELECT content_hash FROM examples")}

    # ---- decisions ---------------------------------------------------------------------------------------
    @staticmethod
    def _state(row: sqlite3.Row | dict) -> dict:
        return {"status": row["status"], "messages": json.loads(row["messages"]),
                "edited": bool(row["edited"]), "reason": row["reason"]}

    def _apply_state(self, c: sqlite3.Connection, example_id: int, state: dict, ts: str) -> None:
        """Set an example's status, messages, edited flag and reason. The text columns are written only when the
        messages differ, so a decision does not rewrite the example's full-text index entries (their trigger
        fires on any UPDATE naming text)."""
        msgs = canonical_messages(state["messages"])
        c.execute("UPDATE examples SET status=?, edited=?, reason=?, updated_at=? WHERE id=?",
                  (state["status"], int(state["edited"]), state["reason"], ts, example_id))
        c.execute("UPDATE examples SET messages=?, text=?, content_hash=? WHERE id=? AND messages IS NOT ?",
                  (msgs, flatten(state["messages"]), content_hash(state["messages"]), example_id, msgs))

    def decide(self, action: str, changes: dict[int, dict], reason: str | None = None,
               expect: dict[int, dict] | None = None) -> int:
        """Record one user action that changes one or more examples, and apply it, atomically.

        `changes` maps example id → fields to set (status, messages, reason). `expect` maps example id → fields
        (status, messages, edited) it must still have: when another process changed one meanwhile, nothing is
        applied and StoreError says so. Returns the decision id."""
        if not changes:
            raise StoreError("nothing to change")
        ts = now()
        with self.transaction() as c:
            before, after = {}, {}
            for eid, new in changes.items():
                row = c.execute("SELECT * FROM examples WHERE id=?", (eid,)).fetchone()
                if row is None:
                    raise StoreError(f"no example with id {eid}")
                old = self._state(row)
                for key, want in (expect or {}).get(eid, {}).items():
                    same = (canonical_messages(want) == canonical_messages(old[key]) if key == "messages"
                            else want == old[key])
                    if not same:
                        raise StoreError(f"example {eid} changed meanwhile ({key}); left as it is")
                state = dict(old)
                state.update({k: v for k, v in new.items() if k in ("status", "messages", "reason")})
                if "messages" in new and canonical_messages(new["messages"]) != canonical_messages(old["messages"]):
                    state["edited"] = True
                before[str(eid)], after[str(eid)] = old, state
                self._apply_state(c, eid, state, ts)
            cur = c.execute(
                "INSERT INTO decisions (kind, action, target, example_ids, before, after, reason, created_at) "
                "VALUES ('do', ?, NULL, ?, ?, ?, ?, ?)",
                (action, json.dumps([int(k) for k in changes]), json.dumps(before, ensure_ascii=False),
                 json.dumps(after, ensure_ascii=False), reason, ts))
            return cur.lastrowid

    def set_status(self, example_id: int, status: str, reason: str | None = None) -> int:
        if status not in STATUSES:
            raise StoreError(f"unknown status {status!r}")
        return self.decide(status if status != "pending" else "reset", {example_id: {"status": status, "reason": reason}})

    def edit(self, example_id: int, messages: list[dict]) -> int:
        return self.decide("edit", {example_id: {"messages": messages}})

    def _refresh_stacks(self) -> None:
        # Replays only the log rows written since the last look (by any process), so undo stays cheap.
        rows = self.conn.execute("SELECT id, kind, target FROM decisions WHERE id > ? ORDER BY id",
                                 (self._stack_seen,)).fetchall()
        for did, kind, target in rows:
            if kind == "do":
                self._done.append(did)
                self._undone.clear()
            elif kind == "undo":
                if self._done and self._done[-1] == target:
                    self._done.pop()
                self._undone.append(target)
            else:
                if self._undone and self._undone[-1] == target:
                    self._undone.pop()
                self._done.append(target)
            self._stack_seen = did

    def _replay(self, kind: str) -> dict:
        ts = now()
        with self.transaction() as c:
            self._refresh_stacks()
            stack = self._done if kind == "undo" else self._undone
            if not stack:
                raise StoreError("nothing to undo" if kind == "undo" else "nothing to redo")
            target = stack[-1]
            row = c.execute("SELECT * FROM decisions WHERE id=?", (target,)).fetchone()
            before, after = json.loads(row["before"]), json.loads(row["after"])
            apply, prior = (before, after) if kind == "undo" else (after, before)
            for eid, state in apply.items():
                self._apply_state(c, int(eid), state, ts)
            c.execute("INSERT INTO decisions (kind, action, target, example_ids, before, after, reason, created_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                      (kind, row["action"], target, row["example_ids"], json.dumps(prior), json.dumps(apply), ts))
            self._refresh_stacks()
        return {"undone" if kind == "undo" else "redone": row["action"],
                "decision": target, "example_ids": json.loads(row["example_ids"])}

    def undo(self) -> dict:
        """Revert the latest decision not yet undone (all examples it touched). Raises if there is none."""
        return self._replay("undo")

    def redo(self) -> dict:
        """Re-apply the latest undone decision, unless a new decision was made since."""
        return self._replay("redo")

    def last_decision(self, example_id: int, action: str) -> dict | None:
        """The newest decision of `action` made on example_id (not an undo or redo of one): its id, reason,
        time, and the example's state before and after it. None if there is none."""
        with self.lock:
            row = self.conn.execute(
                "SELECT id, before, after, reason, created_at FROM decisions WHERE kind='do' AND action=? AND "
                "EXISTS (SELECT 1 FROM json_each(decisions.example_ids) e WHERE e.value=?) ORDER BY id DESC LIMIT 1",
                (action, example_id)).fetchone()
        if row is None:
            return None
        key = str(example_id)
        return {"id": row["id"], "reason": row["reason"], "created_at": row["created_at"],
                "before": json.loads(row["before"]).get(key), "after": json.loads(row["after"]).get(key)}

    def decisions(self, limit: int = 50) -> list[dict]:
        with self.lock:
            rows = self.conn.execute("SELECT id, kind, action, target, example_ids, reason, created_at "
                                     "FROM decisions ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) | {"example_ids": json.loads(r["example_ids"])} for r in rows]

    # ---- runs -----------------------------------------------------------------------------------------------
    def create_run(self, run_id: str, run_dir: str, spec: dict, meta: dict) -> None:
        ts = now()
        with self.transaction() as c:
            c.execute("INSERT INTO runs (id, status, run_dir, spec, meta, created_at, updated_at) "
                      "VALUES (?, 'created', ?, ?, ?, ?, ?)",
                      (run_id, run_dir, json.dumps(spec), json.dumps(meta, default=str), ts, ts))

    def update_run(self, run_id: str, status: str, meta: dict | None = None) -> None:
        with self.transaction() as c:
            row = c.execute("SELECT meta FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                return
            merged = {**json.loads(row["meta"] or "{}"), **(meta or {})}
            c.execute("UPDATE runs SET status=?, meta=?, updated_at=? WHERE id=?",
                      (status, json.dumps(merged, default=str), now(), run_id))

    def runs(self) -> list[dict]:
        with self.lock:
            rows = self.conn.execute("SELECT * FROM runs ORDER BY created_at DESC").fetchall()
        return [dict(r) | {"spec": json.loads(r["spec"]), "meta": json.loads(r["meta"])} for r in rows]

    def get_run(self, run_id: str) -> dict:
        with self.lock:
            r = self.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        if r is None:
            raise StoreError(f"no run {run_id!r}; `forge runs` lists them")
        return dict(r) | {"spec": json.loads(r["spec"]), "meta": json.loads(r["meta"])}

    # ---- model registry ---------------------------------------------------------------------------------------
    def register_model(self, record: dict, models_dir: Path) -> None:
        """Add a model. Its file must lie inside the workspace's models folder: nothing else is ever registered."""
        path = Path(record["path"]).resolve()
        try:
            path.relative_to(Path(models_dir).resolve())
        except ValueError:
            raise StoreError(f"{path} is outside the models folder {models_dir}; not registered") from None
        with self.transaction() as c:
            c.execute("INSERT INTO models (id, name, path, quant, bytes, sha256, run_id, status, meta, created_at) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (record["id"], record["name"], str(path), record.get("quant"), record.get("bytes"),
                       record.get("sha256"), record.get("run_id"), record.get("status", "ready"),
                       json.dumps(record.get("meta", {}), default=str), now()))

    def models(self) -> list[dict]:
        with self.lock:
            rows = self.conn.execute("SELECT * FROM models ORDER BY created_at DESC").fetchall()
        return [dict(r) | {"meta": json.loads(r["meta"] or "{}")} for r in rows]

    def get_model(self, model_id: str, missing_ok: bool = False) -> dict | None:
        with self.lock:
            row = self.conn.execute("SELECT * FROM models WHERE id=?", (model_id,)).fetchone()
        if row is None:
            if missing_ok:
                return None
            raise StoreError(f"no model {model_id!r}; `forge models` lists them")
        return dict(row) | {"meta": json.loads(row["meta"] or "{}")}

    # ---- evaluations -----------------------------------------------------------------------------------------
    def save_eval(self, model_id: str, dataset: str, metrics: dict, outputs: list[dict]) -> int:
        with self.transaction() as c:
            cur = c.execute("INSERT INTO evals (model_id, dataset, metrics, outputs, created_at) VALUES (?,?,?,?,?)",
                            (model_id, dataset, json.dumps(metrics), json.dumps(outputs, ensure_ascii=False), now()))
            return cur.lastrowid

    def evals(self, model_id: str | None = None) -> list[dict]:
        sql, params = "SELECT * FROM evals", []
        if model_id:
            sql, params = sql + " WHERE model_id=?", [model_id]
        with self.lock:
            rows = self.conn.execute(sql + " ORDER BY id DESC", params).fetchall()
        return [dict(r) | {"metrics": json.loads(r["metrics"]), "outputs": json.loads(r["outputs"])} for r in rows]

    def vote(self, model_id: str, baseline_id: str, dataset: str, prompt_index: int, vote: str) -> None:
        """A person's preference for one prompt; voting again on the same prompt replaces the earlier vote."""
        if vote not in ("model", "baseline", "tie"):
            raise StoreError(f"unknown vote {vote!r}")
        with self.transaction() as c:
            c.execute("INSERT INTO votes (model_id, baseline_id, dataset, prompt_index, vote, created_at) "
                      "VALUES (?,?,?,?,?,?) ON CONFLICT (model_id, baseline_id, dataset, prompt_index) "
                      "DO UPDATE SET vote=excluded.vote, created_at=excluded.created_at",
                      (model_id, baseline_id, dataset, prompt_index, vote, now()))

    def votes(self, model_id: str, baseline_id: str, dataset: str) -> dict[int, str]:
        with self.lock:
            rows = self.conn.execute("SELECT prompt_index, vote FROM votes WHERE model_id=? AND baseline_id=? "
                                     "AND dataset=?", (model_id, baseline_id, dataset)).fetchall()
        return {r[0]: r[1] for r in rows}

    def mark_distinct(self, ids: list[int], distinct: bool = True) -> list[tuple[int, int]]:
        """Mark every pair among `ids` as not duplicates (or clear the marks). Returns the pairs changed."""
        ids = sorted(set(ids))
        pairs = [(a, b) for k, a in enumerate(ids) for b in ids[k + 1:]]
        with self.transaction() as c:
            if distinct:
                c.executemany("INSERT OR IGNORE INTO distinct_pairs (a, b, created_at) VALUES (?, ?, ?)",
                              [(a, b, now()) for a, b in pairs])
            else:
                c.executemany("DELETE FROM distinct_pairs WHERE a=? AND b=?", pairs)
        return pairs

    def distinct_pairs(self) -> set[tuple[int, int]]:
        with self.lock:
            return {(r[0], r[1]) for r in self.conn.execute("SELECT a, b FROM distinct_pairs")}

    # ---- later stages -----------------------------------------------------------------------------------
    def get_embeddings(self, model: str, hashes: list[str]) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        with self.lock:
            for i in range(0, len(hashes), 500):
                chunk = hashes[i:i + 500]
                for h, v in self.conn.execute(
                        f"SELECT content_hash, vector FROM embeddings WHERE model=? AND content_hash IN "
                        f"({','.join('?' * len(chunk))})", [model, *chunk]):
                    out[h] = v
        return out

    def put_embeddings(self, model: str, dim: int, vectors: dict[str, bytes]) -> None:
        ts = now()
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO embeddings (model, content_hash, dim, vector, created_at) "
                          "VALUES (?,?,?,?,?)", [(model, h, dim, v, ts) for h, v in vectors.items()])


_FTS_SPECIAL = set('"*():^+-')
# What the Porter stemmer takes off English words (with the forms those endings take), for Store._typed_query.
_SUFFIXES = ("ing", "ings", "ingly", "ion", "ions", "ation", "ations", "ational", "ate", "ated", "ates", "ating",
             "ative", "ed", "er", "ers", "es", "s", "ly", "ment", "ments", "ness", "ity", "ities", "ive", "ize",
             "ized", "izes", "izing", "ization", "ise", "ised", "ises", "ising", "isation", "ful", "fulness", "ous",
             "ously", "ousness", "ance", "ances", "ence", "ences", "able", "ably", "ible", "al", "ally", "als", "ic",
             "ical", "ically", "ism", "isms", "ist", "ists", "iti", "ent", "ently", "ant", "ement", "y", "ies",
             "ied", "e", "est", "iveness")


def fts_query(text: str) -> str:
    """Turn what a person types into a safe FTS5 query: each word quoted, the last one (two letters or more) a
    prefix match.
    Input that already uses FTS syntax (quotes, AND/OR/NOT, col:) is passed through."""
    text = text.strip()
    words = text.split()
    if (any(w in ("AND", "OR", "NOT", "NEAR") for w in words) or '"' in text) and text.count('"') % 2 == 0:
        return text
    parts = []
    for w in words:
        w = "".join(ch for ch in w if ch not in _FTS_SPECIAL)
        if w:
            parts.append(f'"{w}"')
    if not parts:
        return '""'
    if len(parts[-1]) > 3:  # '"x"': one letter is matched as a word, not as the prefix of nearly every one
        parts[-1] += "*"
    return " ".join(parts)

