"""Evaluations and votes: the stored results of `forge eval` (metrics and every output) and a person's vote on
each prompt of a comparison."""

from __future__ import annotations

import json

from forge.store.db import StoreError, now


class EvalsMixin:
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
