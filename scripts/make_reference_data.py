#!/usr/bin/env python3
"""Generate the general reference set of the forgetting check: 40 short general-knowledge and chat Q&A pairs.

Each training run measures the mean loss on these answers with the base model (adapter off) before training and
with the adapter after (forge/train/runner.py); a rise over the spec's forgetting_threshold is a warning that the
tuned model may have lost general ability. The facts and phrasings are written here from templates, so the file
can ship with forge. Deterministic (seeded); re-run to regenerate:

    python scripts/make_reference_data.py             # writes data/reference/general.jsonl
    python scripts/make_reference_data.py --out FILE  # somewhere else (a test checks it reproduces the file)
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 13
OUT = Path(__file__).resolve().parent.parent / "data" / "reference" / "general.jsonl"

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Canada", "Ottawa"), ("Egypt", "Cairo"),
            ("Spain", "Madrid"), ("Kenya", "Nairobi"), ("Peru", "Lima")]
CAPITAL_Q = ["What is the capital of {c}?", "Which city is the capital of {c}?", "Name the capital of {c}."]
CAPITAL_A = ["The capital of {c} is {k}.", "{k} is the capital of {c}."]

OPPOSITES = [("hot", "cold"), ("early", "late"), ("empty", "full"), ("heavy", "light"), ("open", "closed"),
             ("above", "below")]
OPPOSITE_Q = ["What is the opposite of \"{w}\"?", "Give me the opposite of the word \"{w}\"."]
OPPOSITE_A = ["The opposite of \"{w}\" is \"{o}\".", "\"{o}\" is the opposite of \"{w}\"."]

SUMS = [(2, 3), (7, 5), (12, 9), (20, 22), (6, 8), (15, 15)]
SUM_Q = ["What is {a} plus {b}?", "How much is {a} + {b}?"]
SUM_A = ["{a} plus {b} is {s}.", "{a} + {b} = {s}."]

FACTS = [
    ("How many days are in a week?", "There are seven days in a week."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
    ("What do bees make?", "Bees make honey from the nectar of flowers."),
    ("At what temperature does water freeze?", "Water freezes at 0 degrees Celsius, or 32 degrees Fahrenheit."),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun."),
    ("What colour do you get by mixing blue and yellow?", "Mixing blue and yellow gives green."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth."),
    ("Which gas do plants take in from the air?", "Plants take in carbon dioxide and give off oxygen."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("How many sides does a triangle have?", "A triangle has three sides."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system."),
    ("Which animal is known as the king of the jungle?", "The lion is often called the king of the jungle."),
]
CHAT = [
    ("Hi! How are you today?", "I'm doing well, thank you for asking. How can I help you today?"),
    ("Can you suggest a name for a small grey cat?", "How about Pebble? It suits a small grey cat."),
    ("Thanks for your help!", "You're welcome! Let me know if there is anything else I can do."),
    ("Give me one tip for sleeping better.", "Try to go to bed and wake up at the same time every day."),
    ("What is a good way to start learning to cook?",
     "Start with a few simple dishes, such as scrambled eggs or pasta, and cook them until they feel easy."),
    ("Write a one-line greeting for a birthday card.", "Happy birthday! Wishing you a year full of joy."),
]


def pairs(rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for c, k in CAPITALS:
        out.append((rng.choice(CAPITAL_Q).format(c=c), rng.choice(CAPITAL_A).format(c=c, k=k)))
    for w, o in OPPOSITES:
        out.append((rng.choice(OPPOSITE_Q).format(w=w), rng.choice(OPPOSITE_A).format(w=w, o=o)))
    for a, b in SUMS:
        out.append((rng.choice(SUM_Q).format(a=a, b=b), rng.choice(SUM_A).format(a=a, b=b, s=a + b)))
    out += FACTS + CHAT
    rng.shuffle(out)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = pairs(random.Random(SEED))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                         {"role": "assistant", "content": a}]},
                                           ensure_ascii=False) + "\n" for q, a in rows), encoding="utf-8")
    print(f"{len(rows)} pairs → {args.out}")
    return args.out


if __name__ == "__main__":
    main()
