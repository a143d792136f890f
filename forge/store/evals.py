"""Evaluations, votes and drafts: the stored results of `forge eval` (metrics and every output), a person's vote on
each prompt of a comparison, and a model's own drafts of answers to the person's prompts (self-play pairs)."""

from __future__ import annotations

import hashlib
import json

from forge.store.db import StoreError, canonical_messages, now


class EvalsMixin:
    # ---- evaluations -----------------------------------------------------------------------------------------
    def save_eval(self, model_id: str, dataset: str, metrics: dict, outputs: list[dict]) -> int:
        with self.transaction() as c:
            cur = c.execute("INSERT INTO evals (model_id, dataset, metrics, outputs, created_at) VALUES (?,?,?,?,?)",
                            (model_id, dataset, json.dumps(metrics), json.dumps(outputs, ensure_ascii=False), now()))
            return cur.lastrowid

    def evals(self, model_id: str | None = None, dataset: str | None = None) -> list[dict]:
        """Stored evals, newest first; only model_id's and/or only those on `dataset` when given."""
        where = [(col, v) for col, v in (("model_id", model_id), ("dataset", dataset)) if v]
        sql = "SELECT * FROM evals" + (" WHERE " + " AND ".join(f"{col}=?" for col, _ in where) if where else "")
        params = [v for _, v in where]
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

    # ---- drafts ------------------------------------------------------------------------------------------
    def save_drafts(self, model_id: str, drafts: dict[int, tuple[list[dict], str]]) -> int:
        """Store model_id's answer to each example's prompt (example id → (prompt messages, answer)), replacing
        an earlier draft of the same model for that example. Returns how many were stored."""
        ts = now()
        with self.transaction() as c:
            c.executemany("INSERT INTO drafts (example_id, model_id, prompt_hash, text, created_at) VALUES (?,?,?,?,?) "
                          "ON CONFLICT (example_id, model_id) DO UPDATE SET prompt_hash=excluded.prompt_hash, "
                          "text=excluded.text, created_at=excluded.created_at",
                          [(eid, model_id, prompt_hash(prompt), text, ts) for eid, (prompt, text) in drafts.items()])
        return len(drafts)

    def drafts(self, model_id: str | None = None) -> list[dict]:
        """Stored drafts (example_id, model_id, prompt_hash, text, created_at), oldest first."""
        sql, params = "SELECT * FROM drafts", []
        if model_id:
            sql, params = sql + " WHERE model_id=?", [model_id]
        with self.lock:
            return [dict(r) for r in self.conn.execute(sql + " ORDER BY created_at, example_id", params).fetchall()]


def prompt_hash(prompt: list[dict]) -> str:
    """The identity of a prompt (the turns before the answer): a draft counts only for the prompt it answered."""
    return hashlib.sha256(canonical_messages(prompt).encode("utf-8")).hexdigest()
