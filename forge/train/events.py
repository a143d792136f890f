"""One metrics interface for a run: events appended as JSON lines to RUN_DIR/events.jsonl (torchtune's
DiskLogger idea). The runner writes; the TUI and CLI tail the file. Each line is flushed as it is written, so
a reader never sees half a line (a torn last line from a crash is skipped)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

EVENTS = "events.jsonl"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf: keep them readable ("nan", "inf")
    return value


class DiskLogger:
    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path = Path(run_dir) / EVENTS
        self.enabled = enabled

    def log(self, event: str, **payload) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), "event": event,
                  **{k: _clean(v) for k, v in payload.items() if v is not None}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def read_events(run_dir: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Events written since byte `offset`, and the offset to pass next time (a partial last line waits)."""
    path = Path(run_dir) / EVENTS
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out, offset + end


def as_float(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
