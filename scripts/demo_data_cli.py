"""What each demo-data script (make_demo_data.py, make_summaries_data.py, make_intent_data.py) does with the rows
it built: write them as TASK.jsonl and TASK_heldout.jsonl, and the command line around it (`--out DIR`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"


def write_jsonl(path: Path, rows: list[dict], ascii_only: bool = False) -> None:
    """One JSON object per line. `ascii_only`: \\u-escape non-ASCII characters (the reminders files were written
    that way)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in rows), encoding="utf-8")


def write_pair(out: Path, task: str, train: list[dict], held: list[dict], ascii_only: bool = False) -> tuple[int, int]:
    """TASK.jsonl and TASK_heldout.jsonl in `out` (see write_jsonl for `ascii_only`)."""
    for name, rows in ((f"{task}.jsonl", train), (f"{task}_heldout.jsonl", held)):
        write_jsonl(out / name, rows, ascii_only)
    return len(train), len(held)


def main(doc: str, write: Callable[[Path], tuple[int, int | str]], unit: str) -> None:
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEMO_DIR)
    args = ap.parse_args()
    n_train, n_held = write(args.out)
    print(f"{n_train} training and {n_held} held-out {unit} → {args.out}")
