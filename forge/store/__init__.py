"""Store: the workspace database (SQLite, one file), one module per table family. Open `db` first (the connection,
transactions and every migration), then `examples` (examples and the decision log that drives undo/redo), `runs`
(runs and the model registry), `evals` (evals and votes) and `embeddings`. `Store` is them all in one object."""

from __future__ import annotations

from pathlib import Path

from forge.store.db import (DB_NAME, MODEL_ID_RE, STATUSES, StoreBase, StoreError, canonical_messages, content_hash,
                            flatten, now, sha256_file)
from forge.store.embeddings import EmbeddingsMixin
from forge.store.evals import EvalsMixin
from forge.store.examples import Example, ExamplesMixin, fts_query
from forge.store.runs import RunsMixin

__all__ = ["DB_NAME", "MODEL_ID_RE", "STATUSES", "Example", "Store", "StoreError", "canonical_messages", "content_hash",
           "flatten", "fts_query", "now", "sha256_file"]


class Store(ExamplesMixin, RunsMixin, EvalsMixin, EmbeddingsMixin, StoreBase):
    """One workspace database. Safe to share between the UI thread and workers: writes are serialised by a
    lock and each is its own immediate transaction."""

    @classmethod
    def for_workspace(cls, workspace: str | Path) -> "Store":
        ws = Path(workspace)
        for sub in ("runs", "models", "exports"):
            (ws / sub).mkdir(parents=True, exist_ok=True)
        return cls(ws / DB_NAME)
