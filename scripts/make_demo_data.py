#!/usr/bin/env python3
"""Generate the built-in reminders task: an informal request with a time expression → "<task> | <when>".

    "set a reminder for tonight: call mom" → "call mom | tonight"

The held-out file is a test the training file cannot have prepared the model for by rote. Its requests are built
from sentence frames written only for it ("note to self: …", "don't let me forget to …", "ping me … to …"), and
its tasks and time expressions come from pools the training file never draws on. No held-out frame's skeleton (the
request with the task and the time taken out) is the skeleton of any training frame, and the frames' key words are
kept apart too (the training side never says "note", "forget", "ping", …). A model scores there only by having
learned where a task and a time sit in a request. The answer format is the same on both sides.

The training side is varied on purpose: about fifty frames, the time first or the task first or in the middle,
with and without filler words and trailing remarks; and about a third of its requests are carrier frames, the task
and the time amid runs of words from other people's dialogues (the summaries task's), so that a model learns to
copy the two parts out of any sentence rather than to strip fifty known frames.

A second held-out file, reminders_heldout_blind.jsonl, has frames written later by someone who had not seen the
carrier frames or the first held-out set's misses: the same held-out tasks and times, frames and words of its own.

Deterministic (seeded); re-run to regenerate:

    python scripts/make_demo_data.py                 # writes data/demo/reminders.jsonl, reminders_heldout.jsonl
                                                     # and reminders_heldout_blind.jsonl
    python scripts/make_demo_data.py --out DIR       # somewhere else (the tests check it reproduces the files)

Also an example of making your own task: lists of parts, frames per side, a seeded shuffle, a held-out split.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from demo_data_cli import main, write_jsonl, write_pair
from make_summaries_data import build as build_summaries

TASKS = [
    "call mom", "pay the electricity bill", "water the plants", "book a dentist appointment", "buy milk",
    "send the invoice to clara", "take out the recycling", "renew my passport", "pick up the dry cleaning",
    "call the plumber", "submit the expense report", "feed the cat", "return the library books",
    "email the landlord about the heater", "buy a birthday present for sam", "refill my prescription",
    "check the tire pressure", "back up my laptop", "cancel the gym membership", "order more printer ink",
    "call grandma", "pay rent", "walk the dog", "finish the slides", "text jordan about dinner",
    "update my resume", "clean the fridge", "schedule the car service", "buy stamps", "charge the camera batteries",
    "sign the permission slip", "pick up the kids from school", "take my vitamins", "defrost the chicken",
    "call the bank about the card", "file my taxes", "water the tomatoes", "bring the umbrella", "stretch",
    "review the pull request", "book train tickets to leeds", "reply to the recruiter", "mow the lawn",
    "move the car for street cleaning", "put the bins out", "call the vet", "buy coffee beans",
    "send flowers to aunt rosa", "practice the piano", "drink some water", "start the laundry",
    "take the lasagna out of the oven", "join the standup call", "print the boarding passes",
    "pay the credit card", "order the groceries", "check on the neighbours", "back up the photos",
    "buy batteries for the smoke alarm", "send the contract to legal", "pick up the parcel at the post office",
    "thank jamie for the help", "bake the bread", "turn off the oven", "bring the laptop charger",
    "prepare questions for the interview", "call the insurance company", "read chapter four",
    "water the garden", "replace the air filter", "pack the gym bag", "call dad", "write the weekly report",
    "cancel the dentist", "buy a card for lee", "pick up mia from football", "turn off the sprinklers",
    "log my hours", "meditate", "defrost the freezer", "book a table for two", "wash the car",
    "return the rental car", "call the school office", "buy dog food", "vacuum the stairs", "iron my shirt",
    "order a new phone case", "fix the leaking tap", "renew the car insurance", "send the rsvp",
    "pay the parking fine", "take the bins back in", "change the bed sheets", "buy a gift for the wedding",
    "confirm the hotel booking", "email my thesis supervisor", "top up my bus card", "clean the bathroom",
    "check the mailbox", "pick up the prescription", "call the electrician", "make soup for the week",
    "upload the holiday photos", "pay the phone bill", "ask hannah about the keys", "print the tickets",
    "go for a run", "water the orchids", "sort out the recycling", "buy new running shoes", "call uncle joe",
    "book the vet for rex", "submit my timesheet", "return the drill to pete", "unload the dishwasher",
    "book a haircut", "read the contract", "cancel the newspaper", "change the smoke alarm battery",
    "take the medicine", "order pizza for the team", "buy flour and eggs", "check in for the flight",
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
    "at 5:30", "on thursday", "in 15 minutes", "at quarter to nine", "tuesday morning", "on the 28th",
    "next wednesday at 10", "in four hours", "at 7 tomorrow", "on saturday", "after work", "at lunchtime",
    "on monday", "in 90 minutes", "at 8:15am", "wednesday night", "on the 9th", "in a fortnight",
    "at 9 tonight", "next sunday", "this friday", "at 12:30", "tomorrow afternoon", "on the 2nd of may",
    "saturday at 10", "in 30 minutes", "at 3", "before dinner", "on christmas eve", "at 7pm on sunday",
]

# Each side's frames. `{task}` and `{when}` are the parts the answer copies; everything else is the frame.
TRAIN_FRAMES = [
    "remind me to {task} {when}", "{when} remind me to {task}", "can you remind me {when} to {task}",
    "pls remind me to {task} {when}", "remind me {when}: {task}", "remind me {when} that i need to {task}",
    "yo remind me {task} {when}", "could you remind me to {task} {when}", "can u remind me to {task} {when}?",
    "{when} please remind me to {task}", "i have to {task} {when}", "{when} i have to {task}",
    "i need to {task} {when}", "{when} i need to {task}", "need to {task} {when}", "i must {task} {when}",
    "i should {task} {when}", "{when} i should {task}", "gotta {task} {when}", "{when} gotta {task}",
    "set a reminder to {task} {when}", "set a reminder for {when}: {task}", "add a reminder {when} to {task}",
    "add to my reminders: {task} {when}", "reminder: {task} {when}", "reminder for {when} - {task}",
    "create reminder {task} {when}", "new reminder - {task} - {when}", "schedule a reminder {when}: {task}",
    "i want a reminder {when} to {task}", "i need a reminder to {task} {when}", "make a reminder: {task}, {when}",
    "make sure i {task} {when}", "{when}, make sure i {task}", "can you make sure i {task} {when}?",
    "remember to {task} {when} please", "please remember: {task} {when}", "help me remember to {task} {when}",
    "i have to remember to {task} {when}", "alert me {when} so i {task}", "bug me {when} to {task}",
    "tell me {when} to {task}", "be sure to tell me to {task} {when}", "hey, {task} {when}, ok?",
    "ok so {task} {when}", "{task} {when}", "{task} {when} pls", "{when}: {task}", "{when} - {task}",
    "it's important that i {task} {when}", "{task} {when}, thanks", "hey assistant, {task} {when}",
]
HELD_FRAMES = [
    "note to self: {task} {when}", "don't let me forget to {task} {when}", "ping me {when} to {task}",
    "heads up for {when}: {task}", "jot this down: {task} {when}", "could you poke me {when}? i gotta {task}",
    "{when} i'm supposed to {task}", "mental note, {task} {when}", "i'd better {task} {when}",
    "todo {when}: {task}", "give me a shout {when} so i {task}", "keep me honest: {task} {when}",
    "flag this for {when}: {task}", "nudge me {when} to {task}", "buzz me {when} to {task}",
    "{when} — {task}, don't let it slip", "put {task} on my list for {when}", "my plan {when} is to {task}",
    "do not let me skip this: {task} {when}", "on my radar {when}: {task}",
]
# Words only the held-out frames use: the training frames must not contain them (checked by the tests too).
HELD_ONLY_WORDS = {"note", "self", "forget", "ping", "heads", "jot", "poke", "supposed", "mental", "better", "todo",
                   "shout", "honest", "flag", "nudge", "buzz", "slip", "list", "plan", "skip", "radar"}
# A second held-out set, written later and blind (by someone who saw the frames above but not the carrier frames
# below, nor which held-out requests a model gets wrong): the same rules, words of its own, a file of its own.
BLIND_FRAMES = [
    "would you mind reminding me to {task} {when}?",
    "{when} i absolutely cannot forget to {task}",
    "alexa, remind me {when} i gotta {task}",
    "txt me {when} so i remember to {task}",
    "quick one: {task} {when}. ty!",
    "reminder pls!! {task} {when} or i'm dead",
    "uh, so {when} i'm meant to {task}, right?",
    "note for future me: {task} {when}",
    "stick {task} on my calendar for {when}",
    "i keep forgetting to {task}, so remind me {when}",
    "um remind me {when} to uh {task}",
    "is it possible to get a reminder {when}? need to {task}",
    "don't forget: {when} u promised to {task}",
    "lmk {when} if i still haven't managed to {task}",
    "ugh, {task} {when}. hate it",
    "tasks for {when}: {task}",
    "{task} needs doing {when}, no excuses",
    "hey it's me, can you remind me {when}? i have to {task} lol",
    "can u bother me {when} about needing to {task}?",
    "ok google remind me to {task} {when} thank you",
]
BLIND_ONLY_WORDS = {
    "about", "absolutely", "alexa", "bother", "calendar", "cannot", "dead", "doing", "excuses", "forgetting", "future",
    "get", "google", "hate", "haven't", "if", "lmk", "lol", "managed", "meant", "mind", "needing", "needs", "no", "one",
    "or", "possible", "promised", "quick", "reminding", "right", "stick", "still", "tasks", "thank", "txt", "ty", "ugh",
    "uh", "um", "would"
}

_WORD_RE = re.compile(r"[\w']+")

# Carrier frames: the task and the time inside words from elsewhere, so that the model learns to copy a task and
# a time out of any sentence rather than to strip the fifty frames above. The words are runs of 1-4 words taken
# from the lines of the summaries task's training dialogues (other people talking about other things; so a change
# to scripts/make_summaries_data.py changes this file too, and the tests' reproduction check says so). A carrier
# never has a word only the held-out frames use, a digit, a word that says when (the time list's words and
# TIME_WORDS), or a task or a time of the lists; the shapes put the runs before, between and after the two parts.
CARRIER_SHAPES = [
    "{a}: {task} {when}", "{a} {task} {when}", "{a} {when}: {task}", "{task} {when}, {b}", "{when} {task}, {b}",
    "{a} {task} {m} {when}", "{a}? {task} {when}", "{when}: {task}. {b}", "{a}, {when} {task} {m}",
    "{a} {when} {m} {task}",
]
CARRIER_SHARE = 0.35
"""The share of training requests that are carrier frames; the rest use TRAIN_FRAMES."""
TIME_WORDS = {
    "today", "tonight", "tomorrow", "yesterday", "now", "soon", "later", "then", "afterwards", "once", "earlier",
    "early", "late", "still", "again", "o'clock", "am", "pm", "minute", "minutes", "hour", "hours", "day", "days",
    "week", "weeks", "weekend", "month", "months", "year", "years", "morning", "afternoon", "evening", "night",
    "noon", "midnight", "daily", "weekly", "monthly", "monday", "tuesday", "wednesday", "thursday", "friday",
    "saturday", "sunday", "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "fifteen", "twenty", "thirty", "forty", "fifty", "hundred", "half", "quarter",
}
"""Words that say when, beyond the time list's own: a carrier with one would give a request two times."""


def carrier_words() -> list[list[str]]:
    """The summaries' training lines as lists of words a carrier may use (see CARRIER_SHAPES); "" marks a word it
    may not, so that a run never spans one."""
    banned = (HELD_ONLY_WORDS | BLIND_ONLY_WORDS | TIME_WORDS | {w for t in TIMES for w in _WORD_RE.findall(t)}
              | {"remind", "reminder", "remember"})  # asking for a reminder is the written frames' part
    lines = []
    for row in build_summaries()[0]:
        for line in row["messages"][0]["content"].split("\n\n", 1)[1].split("\n"):
            said = re.sub(r"\{\{RED:.*?\}\}", " ", line.split(": ", 1)[1].lower())
            words = [w.strip("'") for w in _WORD_RE.findall(said)]
            lines.append(["" if w in banned or not w.replace("'", "").isalpha() else w for w in words])
    return [ws for ws in lines if any(ws)]


def _spans(text: str, part: str) -> int:
    """How often `part` occurs in `text` as whole words."""
    return len(re.findall(rf"(?<![\w']){re.escape(part)}(?![\w'])", text))


def unambiguous(text: str, task: str, when: str) -> bool:
    """The request holds its task and its time once each, and no other task or time of the lists."""
    low = text.lower()
    return (_spans(low, task) == 1 and _spans(low, when) == 1
            and not any(_spans(low, t) for t in TASKS if t != task and t not in task)
            and not any(_spans(low, t) for t in TIMES if t != when and t not in when))


def fragment(lines: list[list[str]], rng: random.Random) -> str:
    """1-4 consecutive usable words of a random line."""
    while True:
        words = rng.choice(lines)
        n = rng.randint(1, 4)
        start = rng.randrange(len(words))
        run = words[start:start + n]
        if run and all(run):
            return " ".join(run)


def skeleton(request: str, task: str, when: str) -> str:
    """The frame of a request: its words once the task and the time are taken out, lower case, in order."""
    rest = request.lower().replace(task, " ", 1).replace(when, " ", 1)
    return " ".join(_WORD_RE.findall(rest))


def split(items: list[str], rng: random.Random, held: float) -> tuple[list[str], list[str]]:
    items = items[:]
    rng.shuffle(items)
    k = max(1, round(len(items) * held))
    return items[k:], items[:k]


def compose(tasks, times, frames, n, rng, carriers: list[list[str]] | None = None) -> list[dict]:
    """n distinct requests, each frame used about equally often; a few capitalised or with a trailing mark. With
    `carriers`, a share of them (CARRIER_SHARE) are carrier frames made of those words."""
    seen, out = set(), []
    while len(out) < n:
        task, when, frame = rng.choice(tasks), rng.choice(times), frames[len(out) % len(frames)]
        if carriers and rng.random() < CARRIER_SHARE:
            frame = rng.choice(CARRIER_SHAPES).format(task="{task}", when="{when}", **{
                k: fragment(carriers, rng) for k in "abm"})
        text = frame.format(task=task, when=when)
        if carriers and not unambiguous(text, task, when):
            continue
        if rng.random() < 0.15:
            text = text[0].upper() + text[1:]
        if rng.random() < 0.1 and text[-1].isalnum():
            text += rng.choice([".", "!"])
        if text in seen:
            continue
        seen.add(text)
        out.append({"input": text, "output": f"{task} | {when}"})
    rng.shuffle(out)
    return out


def build(seed: int = 2026, n_train: int = 640, n_held: int = 100,
          carriers: bool = True) -> tuple[list[dict], list[dict], list[dict]]:
    """(training, held-out, blind held-out) requests. Both held-out sets draw on the held-out tasks and times."""
    rng = random.Random(seed)
    train_tasks, held_tasks = split(TASKS, rng, 0.2)
    train_times, held_times = split(TIMES, rng, 0.2)
    train = compose(train_tasks, train_times, TRAIN_FRAMES, n_train, rng)
    held = compose(held_tasks, held_times, HELD_FRAMES, n_held, rng)
    # Drawn apart, so that the held-out requests stay what they were before there were carriers or a blind set.
    if carriers:
        train = compose(train_tasks, train_times, TRAIN_FRAMES, n_train, random.Random(seed + 1), carrier_words())
    blind = compose(held_tasks, held_times, BLIND_FRAMES, n_held, random.Random(seed + 2))
    return train, held, blind


def write(out: Path) -> tuple[int, str]:
    train, held, blind = build()
    write_pair(out, "reminders", train, held, ascii_only=True)
    write_jsonl(out / "reminders_heldout_blind.jsonl", blind, ascii_only=True)
    return len(train), f"{len(held)} + {len(blind)} (blind)"


if __name__ == "__main__":
    main(__doc__, write, "requests")
