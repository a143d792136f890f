#!/usr/bin/env python3
"""Generate the built-in demo task: an informal request with a time expression → "<task> | <when>".

    "dont let me forget to call mom tomorrow at 5" → "call mom | tomorrow at 5"

Tasks, time expressions and phrasings are each split into a training pool and a held-out pool, so the held-out
file tests requests whose task, time AND phrasing never occur in the training file: a model can only score there
by learning the task, not by remembering strings. Deterministic (seeded); re-run to regenerate:

    python scripts/make_demo_data.py            # writes data/demo/reminders.jsonl and reminders_heldout.jsonl

Also an example of making your own task: lists of parts, a few phrasings, a seeded shuffle, a held-out split.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TASKS = [
    "call mom", "pay the electricity bill", "water the plants", "book a dentist appointment", "buy milk",
    "send the invoice to clara", "take out the recycling", "renew my passport", "pick up the dry cleaning",
    "call the plumber", "submit the expense report", "feed the cat", "return the library books",
    "email the landlord about the heater", "buy a birthday present for sam", "refill my prescription",
    "check the tire pressure", "back up my laptop", "cancel the gym membership", "order more printer ink",
    "call grandma", "pay rent", "walk the dog", "finish the slides for monday", "text jordan about dinner",
    "update my resume", "clean the fridge", "schedule the car service", "buy stamps", "charge the camera batteries",
    "sign the permission slip", "pick up the kids from school", "take my vitamins", "defrost the chicken",
    "call the bank about the card", "file my taxes", "water the tomatoes", "bring the umbrella", "stretch",
    "review the pull request", "book train tickets to leeds", "reply to the recruiter", "mow the lawn",
    "move the car for street cleaning", "put the bins out", "call the vet", "buy coffee beans",
    "send flowers to aunt rosa", "practice the piano", "drink some water", "start the laundry",
    "take the chicken out of the oven", "join the standup call", "print the boarding passes",
    "pay the credit card", "order the groceries", "check on the neighbours", "back up the photos",
    "buy batteries for the smoke alarm", "send the contract to legal", "pick up the parcel at the post office",
    "thank jamie for the help", "bake the bread", "check the oven", "bring the laptop charger",
    "prepare questions for the interview", "call the insurance company", "read chapter four",
    "water the garden", "replace the air filter", "pack the gym bag", "call dad", "write the weekly report",
    "cancel the dentist", "buy a card for lee", "pick up mia from football", "turn off the sprinklers",
    "log my hours", "meditate", "defrost the freezer",
]

TIMES = [
    "tomorrow at 5", "tonight", "at 9am", "on friday", "next monday", "in 20 minutes", "this afternoon",
    "tomorrow morning", "at noon", "on the 1st", "next week", "in an hour", "at 7:30", "on saturday morning",
    "after lunch", "before bed", "at 6pm", "on tuesday at 3", "in two days", "at the end of the month",
    "tomorrow evening", "next friday", "at 8 tonight", "on sunday", "in 10 minutes", "this evening",
    "on wednesday", "at half past four", "first thing tomorrow", "on the 15th", "next thursday at noon",
    "in 45 minutes", "at 11", "on monday morning", "at 2:15", "this weekend", "tomorrow at lunch",
    "on new year's eve", "in three hours", "at 10pm", "next tuesday", "on the 3rd at 9", "friday afternoon",
    "at dawn", "in half an hour", "thursday evening", "at 4", "the day after tomorrow", "on march 2nd",
    "at 6:45 tomorrow", "sunday night", "in 5 minutes", "at midnight", "next saturday", "on the 20th",
    "tomorrow before work", "at 3pm on friday", "this coming monday", "in a week", "at 1",
]

PHRASINGS = [
    "remind me to {task} {when}", "dont let me forget to {task} {when}", "{when} i need to {task}",
    "can you remind me {when} to {task}", "pls remind me to {task} {when}", "i have to {task} {when}",
    "set a reminder to {task} {when}", "need to {task} {when}", "ping me {when} to {task}",
    "make sure i {task} {when}", "{when} remind me to {task}", "hey, {task} {when}, ok?",
    "note to self: {task} {when}", "don't forget, {task} {when}", "yo remind me {task} {when}",
    "gotta {task} {when}", "could u nudge me to {task} {when}", "reminder: {task} {when}",
    "i must {task} {when} dont let me forget", "{when}: {task}", "help me remember to {task} {when}",
    "i should really {task} {when}", "remember to {task} {when} please", "alert me {when} so i {task}",
    "add a reminder {when} to {task}", "remind me {when} that i need to {task}", "ok so {task} {when}",
    "put it in my reminders: {task} {when}", "bug me {when} to {task}", "can u make sure i {task} {when}",
]


def split(items: list[str], rng: random.Random, held: float) -> tuple[list[str], list[str]]:
    items = items[:]
    rng.shuffle(items)
    k = max(1, round(len(items) * held))
    return items[k:], items[:k]


def compose(tasks, times, phrasings, n, rng) -> list[dict]:
    seen, out = set(), []
    while len(out) < n:
        task, when, phrase = rng.choice(tasks), rng.choice(times), rng.choice(phrasings)
        text = phrase.format(task=task, when=when)
        if rng.random() < 0.15:
            text = text.capitalize()
        if text in seen:
            continue
        seen.add(text)
        out.append({"input": text, "output": f"{task} | {when}"})
    return out


def main() -> None:
    rng = random.Random(2026)
    train_tasks, held_tasks = split(TASKS, rng, 0.2)
    train_times, held_times = split(TIMES, rng, 0.2)
    train_phr, held_phr = split(PHRASINGS, rng, 0.2)
    train = compose(train_tasks, train_times, train_phr, 400, rng)
    held = compose(held_tasks, held_times, held_phr, 60, rng)
    out = Path(__file__).resolve().parent.parent / "data" / "demo"
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("reminders.jsonl", train), ("reminders_heldout.jsonl", held)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(train)} training and {len(held)} held-out requests → {out}")


if __name__ == "__main__":
    main()
