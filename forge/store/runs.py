"""Runs and the model registry: a training run's row (spec, status, meta) and the registered models (GGUFs and
adapters inside the workspace's models folder)."""

from __future__ import annotations

import json
from pathlib import Path

from forge.store.db import StoreError, now


class RunsMixin:
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
