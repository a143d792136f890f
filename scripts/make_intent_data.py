#!/usr/bin/env python3
"""Generate the built-in intent task: a spoken-style request → the JSON the companion's `/api/convert` returns.

    "text sam that dinner is ready" → {"intent": "send_message", "entities": [{"type": "contact", "value": "sam"},
                                                                        {"type": "message", "value": "dinner is ready"}]}

The answer follows `/api/convert`'s schema (forge/config.py CONVERT_TASK): an `intent` (snake_case) and the
`entities` the request mentions, each a `type` and the exact text; one line, keys always in that order, entities in
the order the intent lists its types. Every row carries `/api/convert`'s own system prompt, so an adapter trained
here is asked the way the route asks.

The held-out file is a test the training file cannot have prepared the model for by rote, as for the reminders
(scripts/make_demo_data.py): its requests come from sentence frames written only for it ("give me … on the clock",
"drop … a line: …", "do i need an umbrella in … "), every held-out frame has a word no training frame uses, and
the entity values (tasks, times, cities, people, songs, items, places) come from pools the training file never
draws on; no held-out value is a training value of any type. The intents and entity types are the same on both
sides: they are the output vocabulary the model must learn. Deterministic (seeded); re-run to regenerate:

    python scripts/make_intent_data.py               # writes data/demo/intent.jsonl and intent_heldout.jsonl
    python scripts/make_intent_data.py --out DIR     # somewhere else (the tests check it reproduces the files)
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from demo_data_cli import main, write_pair

# forge/config.py CONVERT_TASK["system"], word for word (the tests check they stay the same).
SYSTEM = ("Convert the user's request into JSON with the intent (a short snake_case verb phrase) and the "
          "entities it mentions, each with a type and the exact text.")

# intent → the entity types its answer lists, in this order (a frame may mention only some: weather without a day).
INTENTS = {
    "set_reminder": ("task", "time"), "set_timer": ("duration",), "set_alarm": ("time",),
    "get_weather": ("location", "date"), "play_music": ("artist", "genre"), "send_message": ("contact", "message"),
    "call_contact": ("contact",), "add_to_list": ("item", "list"), "navigate": ("destination",),
}

# Value pools. A frame's slot name is a pool; the entity type is the pool's type (alarm times are a `time`).
POOLS = {
    "task": ["call the bank", "water the plants", "buy milk", "pay rent", "feed the cat", "book the dentist",
             "take out the bins", "renew my passport", "send the invoice", "pick up the kids", "walk the dog",
             "back up my laptop", "call grandma", "file my taxes", "defrost the chicken", "charge my phone",
             "return the library books", "order printer ink", "clean the fridge", "pay the phone bill",
             "email the landlord", "update my resume", "wash the car", "buy stamps", "take my vitamins",
             "move the car", "print the tickets", "pack the gym bag", "check the mailbox", "iron my shirt",
             "book a haircut", "sign the form", "call the vet", "read chapter two", "thank jamie"],
    "time": ["tomorrow at 5", "tonight", "at 9am", "on friday", "next monday", "in 20 minutes", "this afternoon",
             "tomorrow morning", "at noon", "after lunch", "before bed", "at 6pm", "on tuesday at 3", "in two days",
             "this evening", "at half past four", "first thing tomorrow", "on the 15th", "in an hour",
             "next thursday", "at 10pm", "on sunday night", "after work", "at lunchtime", "before dinner"],
    "clock": ["6am", "6:30", "7:15am", "5:45", "half past six", "quarter to seven", "8 o'clock", "6:50",
              "7am sharp", "5am", "9:30pm", "4:20", "ten past seven", "6:05am", "7:40", "8:15am", "5:30am",
              "midnight", "six thirty", "seven"],
    "duration": ["5 minutes", "ten minutes", "20 minutes", "half an hour", "90 seconds", "three minutes",
                 "45 minutes", "two hours", "a minute", "15 minutes", "25 minutes", "40 seconds",
                 "an hour and a half", "12 minutes", "seven minutes", "30 seconds", "four minutes",
                 "8 minutes", "one hour", "eleven minutes", "two and a half minutes", "35 minutes"],
    "location": ["paris", "oslo", "lisbon", "tokyo", "denver", "cape town", "glasgow", "madrid", "boston",
                 "nairobi", "seoul", "vienna", "lima", "perth", "dublin", "montreal", "krakow", "austin",
                 "cairo", "hanoi", "bristol", "zurich", "athens", "porto", "new york", "san diego"],
    "date": ["today", "tomorrow", "this weekend", "on saturday", "next week", "on monday", "tomorrow afternoon",
             "on wednesday", "this morning", "on thursday", "later today", "on new year's day", "next friday",
             "the day after tomorrow", "over the weekend"],
    "artist": ["taylor swift", "miles davis", "daft punk", "adele", "the beatles", "nina simone", "radiohead",
               "beyonce", "bob marley", "coldplay", "fleetwood mac", "kendrick lamar", "abba", "queen",
               "norah jones", "the cure", "bach", "billie eilish", "stevie wonder", "dolly parton",
               "arctic monkeys", "bjork", "chopin", "lizzo", "the clash"],
    "genre": ["jazz", "lo-fi beats", "classical", "reggae", "eighties pop", "country", "hip hop",
              "bossa nova", "heavy metal", "ambient", "blues", "k-pop", "disco", "folk", "techno"],
    "contact": ["mom", "dad", "sam", "priya", "alex", "grandma", "jordan", "lee", "maria", "tom", "aisha", "ben",
                "chloe", "dev", "emma", "felix", "hana", "ivan", "jess", "kofi", "lucy", "marco", "nina", "omar",
                "pete", "rosa", "uncle joe", "aunt meg"],
    "message": ["i'm running late", "dinner is ready", "the meeting moved to 3", "i'll be home by 7",
                "can you pick up bread", "happy birthday", "call me when you land", "the keys are under the mat",
                "see you at the station", "i left the charger at yours", "thanks for today", "the package arrived",
                "don't wait up", "we need more milk", "good luck with the exam", "i'm on my way",
                "the game starts at 8", "the car is fixed", "i found your wallet", "let's meet at noon",
                "the train is delayed", "bring a jacket", "i booked the table", "the cat is fine"],
    "item": ["eggs", "bananas", "dish soap", "sunscreen", "batteries", "rice", "olive oil", "coffee filters",
             "toothpaste", "bin bags", "oat milk", "a phone charger", "paper towels", "tomatoes", "socks",
             "bread", "yogurt", "light bulbs", "tape", "shampoo", "cat food", "lemons", "a birthday card",
             "peanut butter", "flour"],
    "list": ["shopping", "grocery", "packing", "todo", "hardware store", "party", "camping", "christmas",
             "pharmacy", "weekend"],
    "destination": ["the airport", "the nearest petrol station", "central station", "the office",
                    "grandma's house", "the beach", "the hospital", "ikea", "the gym", "the library", "city hall",
                    "the stadium", "the post office", "the nearest pharmacy", "the museum", "the mall",
                    "the harbour", "downtown", "the zoo", "the ferry terminal", "the park and ride"],
}
TYPE_OF = {"clock": "time"}  # pool → entity type where they differ

# Each side's frames per intent. `{pool}` slots are what the answer copies; everything else is the frame.
TRAIN_FRAMES = {
    "set_reminder": ["remind me to {task} {time}", "{time} remind me to {task}", "can you remind me to {task} {time}",
                     "i need a reminder to {task} {time}", "set a reminder {time} to {task}",
                     "reminder: {task} {time}", "remember to {task} {time}", "{time} i have to {task}"],
    "set_timer": ["set a timer for {duration}", "timer {duration}", "start a {duration} timer",
                  "can you time {duration} for me", "count down {duration}", "{duration} timer please",
                  "i need a timer for {duration}"],
    "set_alarm": ["wake me up at {clock}", "set an alarm for {clock}", "alarm at {clock}",
                  "i want to get up at {clock}", "can you set my alarm for {clock}", "{clock} alarm please",
                  "make sure i wake up at {clock}"],
    "get_weather": ["what's the weather in {location} {date}", "weather {location} {date}",
                    "will it rain in {location} {date}", "how hot will it be in {location} {date}",
                    "forecast for {location} {date}", "{date} weather in {location}",
                    "is it going to be sunny in {location} {date}", "what's the weather like in {location}",
                    "weather for {location}"],
    "play_music": ["play {artist}", "put on some {artist}", "play something by {artist}",
                   "i want to listen to {artist}", "can you play {artist}", "play some {genre}",
                   "put on {genre} music", "i'm in the mood for {genre}"],
    "send_message": ["text {contact} that {message}", "send a message to {contact}: {message}",
                     "tell {contact} {message}", "message {contact} saying {message}",
                     "send {contact} a text: {message}", "can you text {contact} {message}",
                     "let {contact} know {message}"],
    "call_contact": ["call {contact}", "phone {contact}", "ring {contact}", "give {contact} a call",
                     "can you call {contact}", "dial {contact}", "i want to call {contact}"],
    "add_to_list": ["add {item} to my {list} list", "put {item} on the {list} list", "{item} on my {list} list please",
                    "add {item} to the {list} list", "can you add {item} to my {list} list",
                    "{list} list: add {item}", "i need {item} on my {list} list"],
    "navigate": ["directions to {destination}", "navigate to {destination}", "take me to {destination}",
                 "how do i get to {destination}", "show me the way to {destination}", "route to {destination}",
                 "i need to drive to {destination}"],
}
HELD_FRAMES = {
    "set_reminder": ["note to self: {task} {time}", "don't let me forget to {task} {time}",
                     "ping me {time} so i {task}"],
    "set_timer": ["give me {duration} on the clock", "countdown of {duration}, go"],
    "set_alarm": ["rouse me at {clock}", "i must be out of bed by {clock}"],
    "get_weather": ["do i need an umbrella in {location} {date}", "should i pack a coat for {location} {date}",
                    "what are the skies doing over {location}"],
    "play_music": ["blast {artist} in the kitchen", "queue up a few tracks from {artist}", "spin some {genre} for me"],
    "send_message": ["drop {contact} a line: {message}", "shoot {contact} a quick note saying {message}"],
    "call_contact": ["get {contact} on the line", "video chat with {contact}"],
    "add_to_list": ["stick {item} onto the {list} list", "we are out of {item}, {list} list"],
    "navigate": ["guide me to {destination}", "steer me toward {destination}"],
}

_SLOT_RE = re.compile(r"\{(\w+)\}")
_WORD_RE = re.compile(r"[\w']+")


def answer(intent: str, slots: dict[str, str]) -> str:
    """The reference answer: one line of JSON, keys and entities in a fixed order."""
    by_type = {TYPE_OF.get(pool, pool): value for pool, value in slots.items()}
    entities = [{"type": t, "value": by_type[t]} for t in INTENTS[intent] if t in by_type]
    return json.dumps({"intent": intent, "entities": entities}, ensure_ascii=False)


def skeleton(request: str, values: list[str]) -> str:
    """The frame of a request: its words once the entity values are taken out, lower case, in order."""
    rest = request.lower()
    for v in sorted(values, key=len, reverse=True):
        rest = rest.replace(v, " ", 1)
    return " ".join(_WORD_RE.findall(rest))


def split_pools(rng: random.Random, held: float) -> tuple[dict, dict]:
    """Each pool shuffled and cut; then any held-out value that is a training value of any pool is dropped."""
    train, heldout = {}, {}
    for name in sorted(POOLS):
        items = POOLS[name][:]
        rng.shuffle(items)
        k = max(2, round(len(items) * held))
        train[name], heldout[name] = items[k:], items[:k]
    seen = {v for values in train.values() for v in values}
    return train, {name: [v for v in values if v not in seen] for name, values in heldout.items()}


def compose(frames: dict[str, list[str]], pools: dict[str, list[str]], n: int, rng: random.Random) -> list[dict]:
    """n distinct requests, each frame used about equally often; a few capitalised or with a trailing mark."""
    flat = [(intent, f) for intent in sorted(frames) for f in frames[intent]]
    seen, out = set(), []
    while len(out) < n:
        intent, frame = flat[len(out) % len(flat)]
        slots = {pool: rng.choice(pools[pool]) for pool in _SLOT_RE.findall(frame)}
        text = frame.format(**slots)
        if rng.random() < 0.15 and not frame.startswith("{"):  # a capitalised value would not be the exact text
            text = text[0].upper() + text[1:]
        if rng.random() < 0.1 and text[-1].isalnum():
            text += rng.choice([".", "!", "?"])
        if text in seen:
            continue
        seen.add(text)
        out.append({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text},
                                 {"role": "assistant", "content": answer(intent, slots)}]})
    rng.shuffle(out)
    return out


def build(seed: int = 2026, n_train: int = 640, n_held: int = 100) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train_pools, held_pools = split_pools(rng, 0.25)
    return (compose(TRAIN_FRAMES, train_pools, n_train, rng), compose(HELD_FRAMES, held_pools, n_held, rng))


def write(out: Path) -> tuple[int, int]:
    return write_pair(out, "intent", *build())


if __name__ == "__main__":
    main(__doc__, write, "requests")
