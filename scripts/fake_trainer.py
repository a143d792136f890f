#!/usr/bin/env python3
"""A stand-in for the training runner that only prints events: for UI tests and demos without a model.

Usage: python scripts/fake_trainer.py RUN_DIR [--steps N] [--delay S]
Writes the same events.jsonl and status.json the real runner writes (forge/train/runner.py), fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from forge.train.events import DiskLogger  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--delay", type=float, default=0.01)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    run_dir = Path(a.run_dir)
    log = DiskLogger(run_dir)
    stop = {"flag": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(flag=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))

    def status(s, **extra):
        log.log("status", status=s, **extra)
        (run_dir / "status.json").write_text(json.dumps({"status": s, **extra}))

    status("running", max_steps=a.steps)
    step = 0
    for step in range(1, a.steps + 1):
        loss = 2.5 * math.exp(-step / 15) + 0.3
        log.log("log", step=step, loss=round(loss, 4), lr=1e-3, grad_norm=1.0, tokens_per_s=180.0,
                tokens=step * 300, eta_s=(a.steps - step) * a.delay, max_steps=a.steps)
        if step % 10 == 0:
            log.log("eval", step=step, eval_loss=round(loss + 0.1, 4))
        time.sleep(a.delay)
        if stop["flag"]:
            break
    status("stopped" if stop["flag"] else "completed", step=step, first_loss=2.5 * math.exp(-1 / 15) + 0.3,
           last_loss=loss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
