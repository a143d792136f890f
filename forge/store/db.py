"""The workspace database file: SQLite through sqlite-utils, in WAL mode with a busy timeout and foreign keys on;
the transactions every write runs in; the schema migrations of every table family; and the helpers the families
share. Every decision is one `BEGIN IMMEDIATE … COMMIT` transaction that returns only after the commit, so a process
killed at any moment keeps everything it acknowledged."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

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


def _m8_drafts(db) -> None:
    # The model's own answers to the person's prompts (forge prefs draft): the rejected side of self-play pairs.
    db.executescript("""
    CREATE TABLE drafts (
        example_id INTEGER NOT NULL REFERENCES examples(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        prompt_hash TEXT NOT NULL,
        text TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (example_id, model_id)
    );
    """)


MIGRATIONS = [_m1_core, _m2_votes, _m3_distinct, _m4_sources, _m5_counts, _m6_search_indexes,
              _m7_long_prefixes, _m8_drafts]


class StoreBase:
    """The connection, its lock and transactions, and the migrations; the table families (forge/store/*.py) add
    their methods to it, and forge.store.Store is all of them together."""

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
