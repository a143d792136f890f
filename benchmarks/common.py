"""Shared helpers for the ratio benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from pathlib import Path

WORDS = ("note idea week plan walk code learn decide team budget sleep read write think morning evening "
         "project deadline habit friend family money garden tool habit career lesson change small better").split()


def sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_vault(root: Path, n: int, seed: int = 0) -> Path:
    """A synthetic vault: frontmatter tags, inline tags, wikilinks, code, ~150 words a note."""
    rng = random.Random(seed)
    tags = ["reflection", "decision", "learning", "journal", "work"]
    for i in range(n):
        folder = root / f"area{i % 20}"
        folder.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join(sentence(rng, 15) for _ in range(8))
        text = (f"---\ntitle: Note {i}\ntags: [{rng.choice(tags)}, {rng.choice(tags)}]\ncreated: 2026-01-{i % 28 + 1:02d}\n"
                f"---\n# Note {i}\n\n{body}\n\nSee [[area{(i + 1) % 20}/note{i + 1}|the next note]] #idea/{i % 7}\n"
                f"\n```\ncode #{i}\n```\n")
        (folder / f"note{i}.md").write_text(text)
    return root


def timed(fn, repeat: int = 3) -> float:
    """Best-of-n wall time in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def percentiles(samples: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return qs[49], qs[98]


@contextlib.asynccontextmanager
async def curate_app(ws: Path):
    """forge's app on workspace `ws`, headless at 120×40, opened on Curate once its tokenizer has loaded (a worker,
    a few seconds at start): yields (store, app, pilot)."""
    from forge.config import Config
    from forge.store import Store
    from tui.app import make_app

    store = Store.for_workspace(ws)
    app = make_app(Config(workspace=str(ws)), store)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            while not app.screen.tokenizer_ready:  # loads in a worker for a few seconds, as a person waits it out
                await asyncio.sleep(0.05)
            await pilot.pause()
            yield store, app, pilot
    finally:
        store.close()


async def action_to_frame(app, pilot, screen, action: str, n: int) -> dict:
    """{p50_ms, p99_ms} from running `action` on `screen` to the next painted frame, `n` times (a key press
    without the terminal: the binding's action, then the refresh it causes)."""
    samples = []
    for _ in range(n):
        painted = asyncio.get_running_loop().create_future()
        t = time.perf_counter()
        await screen.run_action(action)
        app.call_after_refresh(lambda f=painted: f.done() or f.set_result(time.perf_counter()))
        samples.append((await painted - t) * 1000)
        await pilot.pause()
    p50, p99 = percentiles(samples)
    return {"p50_ms": round(p50, 1), "p99_ms": round(p99, 1)}


def corpus_sentences() -> list[str]:
    """Real English sentences from the Python help topics that ship with the standard library: varied text
    whose embeddings spread like a person's notes do (word salad from a small vocabulary would make every
    pair look like a near-duplicate)."""
    import re
    from pydoc_data.topics import topics

    text = " ".join(topics.values())
    out = []
    for s in re.split(r"(?<=[.!?])\s+", text):
        s = " ".join(s.split())
        if 40 <= len(s) <= 300 and s[0].isupper() and "***" not in s and ">>>" not in s:
            out.append(s)
    return sorted(set(out))
