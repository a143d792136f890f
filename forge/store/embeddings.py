"""Embeddings: vectors cached by model and content hash, so an example embedded once (Dedup, the leakage check) is
never embedded again."""

from __future__ import annotations

from forge.store.db import now


class EmbeddingsMixin:
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
