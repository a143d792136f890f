"""Request counters for /health and the TUI: served, failed, latency, tokens per second."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class Stats:
    served: int = 0
    failed: int = 0
    latency_ms_total: float = 0.0
    completion_tokens: int = 0
    generation_ms: float = 0.0
    recent: deque = field(default_factory=lambda: deque(maxlen=200))

    def record(self, latency_ms: float, completion_tokens: int = 0, generation_ms: float = 0.0) -> None:
        self.served += 1
        self.latency_ms_total += latency_ms
        self.completion_tokens += completion_tokens
        self.generation_ms += generation_ms
        self.recent.append(latency_ms)

    def to_json(self) -> dict:
        recent = sorted(self.recent)
        p95 = recent[min(len(recent) - 1, int(0.95 * len(recent)))] if recent else None
        return {"requests_served": self.served, "requests_failed": self.failed,
                "avg_latency_ms": round(self.latency_ms_total / self.served, 1) if self.served else None,
                "p95_latency_ms": round(p95, 1) if p95 is not None else None,
                "completion_tokens": self.completion_tokens,
                "tokens_per_s": round(self.completion_tokens / (self.generation_ms / 1000), 1)
                if self.generation_ms else None}
