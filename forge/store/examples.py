"""Examples and the decision log: reading and full-text search, the sources they came from, extraction writes,
the decisions a person takes (one logged transaction each, which drives undo/redo) and the pairs marked "not
duplicates"."""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Iterable

from forge.store.db import SOURCE_EXPR, STATUSES, StoreError, canonical_messages, content_hash, flatten, now


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

    @property
    def rejected(self) -> str | None:
        """A preference pair's rejected answer (the messages end with the chosen one), else None."""
        value = self.meta.get("rejected")
        return value if isinstance(value, str) else None

    @property
    def label(self) -> bool | None:
        """A KTO-labelled example's label: True desirable, False undesirable; None for any other example."""
        value = self.meta.get("label")
        return value if isinstance(value, bool) else None

    def to_json(self) -> dict:
        """The example as `forge list/show --json` print it; a pair adds `rejected`, a KTO example `label`."""
        out = {"id": self.id, "status": self.status, "source": self.source, "tags": self.tags,
               "messages": self.messages, "edited": self.edited, "reason": self.reason,
               "note_path": self.note_path, "heading": self.heading, "line": self.line}
        if self.rejected is not None:
            out["rejected"] = self.rejected
        if self.label is not None:
            out["label"] = self.label
        return out


def preference_identity(meta: dict | str | None) -> tuple:
    """What besides the messages makes an example distinct: a pair's rejected answer and a KTO label. A pair and a
    plain example with the same turns, or two pairs sharing the chosen answer, are not duplicates of each other."""
    if isinstance(meta, str):
        try:
            meta = json.loads(meta or "{}")
        except ValueError:
            meta = {}
    meta = meta if isinstance(meta, dict) else {}
    rejected, label = meta.get("rejected"), meta.get("label")
    return (rejected if isinstance(rejected, str) else None, label if isinstance(label, bool) else None)


class ExamplesMixin:
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
        present under another key is a duplicate and not added again (for a preference pair or KTO example the
        content is the messages with the rejected answer or label in meta)."""
        counts = {"added": 0, "updated": 0, "unchanged": 0, "kept": 0, "duplicates": 0}
        ts = now()
        with self.transaction() as c:
            existing = {r[0]: r for r in self._select_in(
                c, "SELECT extract_key, id, source_hash, status, edited FROM examples WHERE extract_key IN ({})",
                [it["extract_key"] for it in items])}
            hashes = [content_hash(it["messages"]) for it in items]
            present = {(r[0], preference_identity(r[1])) for r in self._select_in(
                c, "SELECT content_hash, meta FROM examples WHERE content_hash IN ({})",
                [h for it, h in zip(items, hashes) if it["extract_key"] not in existing])}
            inserts, updates = [], []
            for it, h in zip(items, hashes):
                msgs = it["messages"]
                row = existing.get(it["extract_key"])
                same = (h, preference_identity(it.get("meta")))
                if row is None or row[2] != h:
                    if row is None and same in present:
                        counts["duplicates"] += 1
                        continue
                    common = (json.dumps(it.get("tags", []), ensure_ascii=False), canonical_messages(msgs),
                              flatten(msgs), h, h, it.get("note_path"), it.get("heading"), it.get("line"),
                              it["source_ref"], json.dumps(it.get("meta", {}), ensure_ascii=False, default=str))
                if row is None:
                    present.add(same)
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
