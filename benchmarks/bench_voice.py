"""Voice judge benchmark (issue 25): what the judge adds to an eval of 50 prompts (goal <= 10 s).

Texts: 50 of the person's (~150 words each, stitched from the notes in tests/data/voice/person.txt), 50 of a base
model's (real English sentences from the Python help topics, an assistant-like register) and 50 of a tuned model's
(two thirds the person's sentences, one third the base's), plus N training notes of ~150 words for the copying check
(from the other half of the help-topic sentences: what is copied is only the help topics' own stock phrases).
The first call is timed cold, in this fresh process (it imports scikit-learn and numpy, as the first judge in an eval
would); then the best of three warm calls.

Usage: .venv/bin/python -m benchmarks.bench_voice [N_PROMPTS] [N_TRAINING_NOTES]
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from benchmarks.common import corpus_sentences, timed

PERSON_NOTES = Path(__file__).resolve().parent.parent / "tests" / "data" / "voice" / "person.txt"


def stitched(rng: random.Random, pools: list[tuple[list[str], float]], words: int = 150) -> str:
    """Sentences drawn from the pools (each with its share) until about `words` words."""
    out, n = [], 0
    while n < words:
        r, acc = rng.random(), 0.0
        for pool, share in pools:
            acc += share
            if r <= acc:
                break
        s = rng.choice(pool)
        out.append(s)
        n += len(s.split())
    return " ".join(out)


def texts(n_prompts: int, n_training: int, seed: int = 0) -> tuple[list[str], dict[str, list[str]], list[str]]:
    from forge.eval.voice import sentences

    rng = random.Random(seed)
    notes = [t for t in PERSON_NOTES.read_text(encoding="utf-8").split("\n=====\n") if t.strip()]
    mine = [s for t in notes for s in sentences(t)]
    docs = corpus_sentences()
    docs, unseen = docs[0::2], docs[1::2]
    person = [stitched(rng, [(mine, 1.0)]) for _ in range(n_prompts)]
    base = [stitched(rng, [(docs, 1.0)]) for _ in range(n_prompts)]
    tuned = [stitched(rng, [(mine, 2 / 3), (docs, 1 / 3)]) for _ in range(n_prompts)]
    training = [stitched(rng, [(unseen, 1.0)]) for _ in range(n_training)]
    return person, {"base": base, "tuned": tuned}, training


def main() -> None:
    n_prompts = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    n_training = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    person, systems, training = texts(n_prompts, n_training)
    t = time.perf_counter()
    from forge.eval import voice

    result = voice.judge(person, systems, training_texts=training)
    cold = time.perf_counter() - t
    warm = timed(lambda: voice.judge(person, systems, training_texts=training))
    print(f"voice judge, {n_prompts} prompts (person, base, tuned: {3 * n_prompts} texts of ~150 words), "
          f"{len(training)} training notes")
    print(f"  cold (imports scikit-learn): {cold:.2f} s   warm: {warm:.2f} s   goal: <= 10 s -> "
          f"{'met' if cold <= 10 else 'MISSED'}")
    print(f"  cut to {result['cut_chars']} characters; " + "; ".join(
        f"{name} AUC {s['auc']:.2f} ({s['ci_low']:.2f}-{s['ci_high']:.2f}), copying {s['copying']['share']:.0%}"
        for name, s in result["systems"].items()))
    print(f"  {result['summary']}")


if __name__ == "__main__":
    main()
