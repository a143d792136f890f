"""Key press → next example rendered, with 100k examples in the store (goal p99 < 50 ms), and cold start of
`forge --help` and of the TUI's first frame (goal < 1 s each).

Usage: .venv/bin/python -m benchmarks.bench_tui [N_EXAMPLES]
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import action_to_frame, curate_app, sentence

REPO = Path(__file__).resolve().parent.parent


def fill_store(ws: Path, n: int):
    from forge.store import Store

    store = Store.for_workspace(ws)
    rng = random.Random(1)
    batch = []
    for i in range(n):
        batch.append({"extract_key": f"bench:{i}", "source_kind": "jsonl", "source_ref": f"bench.jsonl:{i + 1}",
                      "tags": [rng.choice(["reflection", "decision", "learning"])],
                      "messages": [{"role": "user", "content": f"Question {i}: " + sentence(rng, 10)},
                                   {"role": "assistant", "content": "\n\n".join(sentence(rng, 20) for _ in range(4))}]})
        if len(batch) == 5000:
            store.ingest(batch)
            batch = []
    store.ingest(batch)
    return store


async def keypress_latency(ws: Path, n_presses: int = 300) -> dict:
    """Time from the key's action starting to the next frame painted (headless driver). Pilot.press is not
    used for timing: it adds ~60 ms of its own idle-waiting that a person at a terminal never sees."""
    out = {}
    async with curate_app(ws) as (_, app, pilot):
        screen = app.screen
        for key, action in (("j", "next"), ("a", "approve")):
            out[key] = await action_to_frame(app, pilot, screen, action, n_presses)
    return out


def cold_start() -> dict:
    def run(args) -> float:
        best = float("inf")
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True, cwd=REPO)
            best = min(best, time.perf_counter() - t)
        return round(best, 3)

    first_frame = ("import sys\nfrom forge.config import Config\nfrom forge.store import Store\n"
                   "from tui.app import make_app\n"
                   "app = make_app(Config(workspace=sys.argv[1]), Store.for_workspace(sys.argv[1]))\n"
                   "app.call_after_refresh(app.exit)\napp.run(headless=True)\n")
    ws = tempfile.mkdtemp(prefix="forge-bench-ws-")
    return {"forge_help_s": run([str(REPO / ".venv/bin/forge"), "--help"]),
            "python_bare_s": run([sys.executable, "-c", "pass"]),
            "tui_first_frame_s": run([sys.executable, "-c", first_frame, ws])}


def main(n: int = 100_000) -> dict:
    ws = Path(tempfile.mkdtemp(prefix="forge-bench-")) / "ws"
    t = time.perf_counter()
    fill_store(ws, n).close()
    fill_s = time.perf_counter() - t
    result = {"examples": n, "fill_s": round(fill_s, 1), "keypress": asyncio.run(keypress_latency(ws)),
              "cold_start": cold_start(), "goal": "keypress p99 < 50 ms; cold start < 1 s"}
    print(result)
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
