#!/usr/bin/env python3
"""Generate the built-in summaries task: a short dialogue or counseling-session transcript → a two-to-three sentence
summary, the shape of the therapy-notes seed (and of SAMSum / DialogSum).

Every dialogue is composed from parts written here: speakers, a situation, its facts (what, where, when, how
much), the turns that state them in one of several phrasings, small talk around them, and an outcome. The summary
is written from the same facts and outcome, so it is determined by what the dialogue says, never a copy of its
opening lines: the first lines are greetings and small talk, the request sits in the middle, the outcome at the end
(the lead-N baseline that forge's Eval shows has to lose to a model that learned the task).

Some counseling sessions contain a risk marker, `{{RED:…}}` around the client's own words; the summary must carry
it byte for byte (forge's normalisation keeps such markers untouched: forge/data/validate.py).

The held-out file shares nothing with the training file but the answer format: its situations, speaker names,
small talk, phrasings and risk statements are all written only for it. Deterministic (seeded); re-run to regenerate:

    python scripts/make_summaries_data.py            # writes data/demo/summaries.jsonl and summaries_heldout.jsonl
    python scripts/make_summaries_data.py --out DIR

The reminders' carrier frames (scripts/make_demo_data.py) borrow words from this file's training lines: a change
to those lines changes data/demo/reminders.jsonl too, so re-run both generators.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

from demo_data_cli import main, write_pair

INSTRUCTION = "Summarize this conversation."

TRAIN_NAMES = ["Amanda", "Tom", "Priya", "Marcus", "Elena", "Jonas", "Chloe", "Rafael", "Grace", "Oliver", "Nadia",
               "Samuel", "Leah", "Victor", "Hannah", "Diego", "Ruth", "Kenji", "Bella", "Isaac", "Maya", "Felix",
               "Sofia", "Adam", "Zara", "Lucas", "Irene", "Omar", "Clara", "Hugo", "Tessa", "Ethan", "Lina", "Noah",
               "Julia", "Ravi", "Emma", "Pavel", "Alice", "Simon"]
HELD_NAMES = ["Beatrix", "Cormac", "Delphine", "Eamon", "Freya", "Gideon", "Harriet", "Ignatius", "Jolene",
              "Kasimir", "Lorelei", "Mungo", "Ottilie", "Percival", "Quinn", "Rosalind", "Thaddeus", "Ursula",
              "Wilbur", "Ximena"]

Lines = list[tuple[str, str]]


class Pick:
    """Seeded choices: p("a", "b") picks a phrasing, p.of(seq) an item, p.chance(x) a coin."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def __call__(self, *options: str) -> str:
        return self.rng.choice(options)

    def of(self, seq):
        return self.rng.choice(seq)

    def chance(self, x: float) -> bool:
        return self.rng.random() < x


# ---- training situations ----------------------------------------------------------------------------------------
TRAIN_SMALL_TALK = [
    ("Hey {b}, got a minute?", "Sure, what's up?"),
    ("Hi {b}! How was your weekend?", "Quiet, thanks. What's going on?"),
    ("Morning {b}. Busy day?", "Not too bad so far. Why?"),
    ("{b}, can I ask you something?", "Of course, go ahead."),
    ("Hey, how are you doing?", "Good, thanks! You?"),
    ("Hi! Did you see the match last night?", "Only the second half. Anyway, what's up?"),
]


def friends_open(p: Pick, a: str, b: str) -> Lines:
    first, reply = p.of(TRAIN_SMALL_TALK)
    return [(a, first.format(b=b)), (b, reply)]


def pet_sitting(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    kind, pet = p.of([("cat", "Biscuit"), ("dog", "Pepper"), ("rabbit", "Clover"), ("parrot", "Kiwi"),
                      ("cat", "Mochi"), ("hamster", "Nugget"), ("dog", "Rufus"), ("tortoise", "Speedy")])
    place = p.of(["Porto", "Vienna", "Edinburgh", "Lyon", "Krakow", "Seville", "Bergen", "Naples"])
    d1, d2 = p.of([("Friday", "Monday"), ("Thursday", "Sunday"), ("the 12th", "the 15th"), ("Wednesday", "Saturday")])
    often = p.of(["twice a day", "every morning", "once in the evening", "morning and night"])
    key_day = p.of(["Thursday evening", "tomorrow after work", "on Wednesday", "tonight"])
    lines = friends_open(p, a, b)
    lines += [(a, p(f"I'm going to {place} from {d1} to {d2}.", f"I'll be away in {place}, {d1} to {d2}.")),
              (b, p("Oh nice, work or holiday?", "Lucky you. What for?")),
              (a, p("A conference, sadly.", "Just a holiday, finally.", "My cousin's wedding.")),
              (a, p(f"Could you feed my {kind} {pet} while I'm gone? Just food and water {often}.",
                    f"Would you mind looking after {pet}, my {kind}? It needs feeding {often}."))]
    if p.chance(0.7):
        lines += [(b, p("Sure, happy to.", "Of course, no problem.")),
                  (a, p(f"Thank you! I'll drop the key off {key_day}.", f"Great, you can pick up the key {key_day}.")),
                  (b, p("Perfect.", "Sounds good."))]
        summary = (f"{a} is going to {place} from {d1} to {d2} and asks {b} to feed {a}'s {kind} {pet} {often}. "
                   f"{b} agrees, and {a} will hand over the key {key_day}.")
    else:
        lines += [(b, p(f"I'm away myself that week, sorry. Ask {c}, {c} loves animals.",
                        f"I can't, I'm travelling too. Maybe {c} could do it?")),
                  (a, p(f"Good idea, I'll text {c}.", f"Okay, I'll ask {c} then."))]
        summary = (f"{a} is going to {place} from {d1} to {d2} and asks {b} to feed {a}'s {kind} {pet}. "
                   f"{b} is away too and suggests asking {c}, which {a} will do.")
    return lines, summary


def restaurant_booking(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    place = p.of(["Luigi's", "the Golden Lotus", "Casa Verde", "the Harbour Grill", "Bistro Nord", "Saffron House"])
    n = p.of(["two", "four", "six", "five", "three", "eight"])
    day = p.of(["Friday", "Saturday", "tomorrow", "Sunday", "Thursday"])
    t1, t2 = p.of([("7pm", "8:30"), ("8", "9:15"), ("7:30", "6:45"), ("1pm", "2:30"), ("6pm", "7:45")])
    note = p.of([("a table by the window", "a window table"), ("a high chair", "a high chair"),
                 ("a vegetarian menu", "vegetarian options"), ("space for a wheelchair", "wheelchair access")])
    lines = [(b, p(f"Good evening, {place}, {b} speaking.", f"{place}, this is {b}. How can I help?")),
             (a, p("Hi, I'd like to book a table, please.", "Hello, do you have any tables free?")),
             (b, p("Of course. For which day?", "Let me check. When for?")),
             (a, f"{day[0].upper() + day[1:]}, at {t1}, for {n} people."),
             (b, p(f"I'm afraid {t1} is full. I could do {t2}.", f"We're fully booked at {t1}, but {t2} is free."))]
    if p.chance(0.7):
        lines += [(a, p(f"{t2} works. And could we have {note[0]}?", f"Fine, {t2} then. Can we get {note[0]}?")),
                  (b, p("No problem, I've noted that. The name?", "Certainly. Under what name?")),
                  (a, f"{a}. Thanks!")]
        summary = (f"{a} calls {place} to book a table for {n} on {day} at {t1}. It is full, so {a} takes {t2} "
                   f"instead and asks for {note[1]}.")
    else:
        lines += [(a, p(f"That's too late for us. Never mind, thanks.", f"Hmm, {t2} doesn't work. I'll try elsewhere.")),
                  (b, p("Sorry about that. Have a nice evening.", "Sorry! Maybe another time."))]
        summary = (f"{a} calls {place} to book a table for {n} on {day} at {t1}. Only {t2} is available, "
                   f"which does not suit {a}, so there is no booking.")
    return lines, summary


def product_return(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    item, fault = p.of([("kettle", "it leaks from the bottom"), ("pair of headphones", "the left side is silent"),
                        ("toaster", "it burns everything"), ("jacket", "the zip broke on day one"),
                        ("blender", "it smells of smoke"), ("lamp", "it flickers all the time"),
                        ("backpack", "a strap came off")])
    when = p.of(["last week", "on Saturday", "ten days ago", "on Monday", "two weeks ago"])
    lines = [(b, p("Hi there, what can I do for you?", "Hello, how can I help today?")),
             (a, p(f"I bought this {item} here {when} and {fault}.", f"This {item} is from your shop, {when}. {fault[0].upper() + fault[1:]}.")),
             (b, p("Oh, I'm sorry. Do you have the receipt?", "That shouldn't happen. Have you got the receipt?"))]
    if p.chance(0.6):
        remedy, rsum = p.of([("a refund", "a full refund"), ("a replacement", "a new one"), ("a repair", "a free repair")])
        lines += [(a, p("Yes, here it is.", "Here, it's on my phone.")),
                  (b, p(f"Thanks. Would you like {remedy}?", f"Great. I can offer you {remedy}.")),
                  (a, p(f"{remedy[2:].capitalize()} is fine, thanks.", f"Yes, {remedy[2:]} please.")),
                  (b, p("All done. Anything else?", "There you go, sorted."))]
        summary = (f"{a} returns a {item} bought {when} because {fault}. {a} has the receipt and gets {rsum}.")
    else:
        lines += [(a, p("I think I threw it away.", "No, I lost it, sorry.")),
                  (b, p("Without a receipt I can only give store credit.", "Then I can offer store credit, not cash.")),
                  (a, p("Okay, store credit then.", "Fine, I'll take the credit."))]
        summary = (f"{a} returns a {item} bought {when} because {fault}. Without a receipt {a} can only get "
                   f"store credit and accepts it.")
    return lines, summary


def doctor_reschedule(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    doc = p.of(["Dr. Patel", "Dr. Moreau", "Dr. Kim", "Dr. Okafor", "Dr. Lindqvist"])
    old = p.of(["Tuesday at 10", "Wednesday at 3", "Thursday morning", "Monday at 9:30"])
    new = p.of(["Friday at 11", "next Monday at 2", "the 14th at 4", "Thursday at 5:15"])
    why, why3 = p.of([("I have to work late", "{a} has to work late"), ("my car is in the garage", "{a}'s car is in the garage"),
                      ("my son is ill", "{a}'s son is ill"), ("I have a job interview", "{a} has a job interview")])
    why3 = why3.format(a=a)
    lines = [(b, p("Good morning, Riverside Surgery.", "Riverside Surgery, how can I help?")),
             (a, p(f"Hi, it's {a}. I have an appointment with {doc} on {old}.", f"Hello, {a} here, I'm booked with {doc} {old}.")),
             (a, p(f"Unfortunately {why}. Could I move it?", f"I need to change it, {why}.")),
             (b, p("Let me see what we have.", "One moment, I'll check the diary.")),
             (b, p(f"{doc} has {new} free.", f"The next slot is {new}."))]
    if p.chance(0.75):
        lines += [(a, p("That's perfect, thank you.", "Great, I'll take it.")),
                  (b, p(f"Done, you're moved to {new}.", "Booked. See you then."))]
        summary = f"{a} moves an appointment with {doc} from {old} to {new} because {why3}."
    else:
        lines += [(a, p("That won't work either. I'll call back.", "Hmm, no. I'll ring again next week.")),
                  (b, "Of course. Your old slot is cancelled, then.")]
        summary = (f"{a} cancels an appointment with {doc} on {old} because {why3}. The free slot, {new}, "
                   f"does not suit, so {a} will call back.")
    return lines, summary


def weekend_hike(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    trail = p.of(["Ben Nevis", "the coastal path", "Snowdon", "the Seven Sisters", "Mount Tam", "the ridge trail"])
    day = p.of(["Saturday", "Sunday", "next Saturday"])
    t = p.of(["7am", "8", "6:30", "9"])
    spot = p.of(["the station", "your place", "the car park", "the bakery on Main Street"])
    bring = p.of(["sandwiches", "a flask of tea", "the map", "sunscreen", "rain jackets"])
    lines = friends_open(p, a, b)
    lines += [(a, p(f"Fancy hiking {trail} on {day}?", f"How about {trail} this {day}? The forecast looks good.")),
              (b, p("Oh, I'd love that!", "Yes! I've been wanting to go for ages.")),
              (b, p("What time?", "When do we leave?")),
              (a, p(f"Let's meet at {spot} at {t}.", f"{t} at {spot}?")),
              (b, p(f"Okay. I'll bring {bring}.", f"Deal, and I'll pack {bring}.")),
              (a, p(f"Should we ask {c} too?", f"Maybe {c} wants to come?"))]
    if p.chance(0.5):
        lines += [(b, p(f"Good idea, I'll message {c}.", f"Sure, I'll ask {c} tonight."))]
        summary = (f"{a} and {b} plan to hike {trail} on {day}, meeting at {spot} at {t}. {b} will bring {bring} "
                   f"and invite {c}.")
    else:
        lines += [(b, p(f"{c} hurt a knee, so probably not.", f"{c} is away this weekend."))]
        summary = (f"{a} and {b} plan to hike {trail} on {day}, meeting at {spot} at {t}. {b} will bring {bring}; "
                   f"{c} cannot come.")
    return lines, summary


def shift_cover(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    day = p.of(["Saturday", "Thursday night", "Sunday morning", "Friday", "Tuesday"])
    why, who = p.of([("my sister is getting married", "{a}'s sister is getting married"), ("I have an exam", "{a} has an exam"),
                     ("my mum is in hospital", "{a}'s mum is in hospital"), ("I'm moving house", "{a} is moving house")])
    who = who.format(a=a)
    swap = p.of(["next Monday", "the Sunday after", "Wednesday", "any shift next week"])
    lines = friends_open(p, a, b)
    lines += [(a, p(f"Could you cover my shift on {day}?", f"Any chance you can take my {day} shift?")),
              (a, p(f"{why[0].upper() + why[1:]}.", f"It's because {why}.")),
              (b, p("Hmm, let me check my calendar.", "Let me think."))]
    if p.chance(0.65):
        lines += [(b, p(f"Okay, I can. But you take {swap} for me?", f"Fine, if you do {swap} in return.")),
                  (a, p("Deal, thank you so much!", "Absolutely, thanks!"))]
        summary = f"{a} asks {b} to cover the {day} shift because {who}. {b} agrees if {a} works {swap} in return."
    else:
        lines += [(b, p(f"Sorry, I'm already working a double that day. Try {c}?", f"I can't, I'm away. {c} might.")),
                  (a, p(f"Okay, I'll ask {c}.", f"Thanks, I'll talk to {c}."))]
        summary = f"{a} asks {b} to cover the {day} shift because {who}. {b} can't and suggests {c}."
    return lines, summary


def flat_viewing(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    rooms = p.of(["one-bedroom", "two-bedroom", "studio", "three-bedroom"])
    street = p.of(["Elm Road", "Canal Street", "Park Lane", "Mill Road", "Queen's Avenue"])
    rent = p.of(["950", "1,200", "780", "1,450", "1,100"])
    deposit = p.of(["one month's rent", "six weeks' rent", "500"])
    move = p.of(["the 1st of June", "next month", "the 15th", "early September"])
    lines = [(a, p(f"Hi, I'm calling about the {rooms} flat on {street}.", f"Hello, is the {rooms} on {street} still available?")),
             (b, p("Yes, it is. Would you like to see it?", "It is! Are you looking to move soon?")),
             (a, p("First, what's the rent?", "How much is it per month?")),
             (b, p(f"{rent} a month, bills not included.", f"It's {rent} per month plus bills.")),
             (b, p(f"The deposit is {deposit}.", f"And {deposit} as a deposit.")),
             (a, p(f"And could I move in by {move}?", f"I'd need to move in around {move}."))]
    if p.chance(0.6):
        lines += [(b, p("That's fine.", "Should be no problem.")),
                  (a, p("Great, can I see it this week?", "Could I view it on Thursday?")),
                  (b, "Sure, I'll send you a time.")]
        summary = (f"{a} asks about the {rooms} flat on {street}: {rent} a month plus bills and a deposit of "
                   f"{deposit}. Moving in by {move} is possible, and {a} will view it this week.")
    else:
        lines += [(b, p("Sorry, the current tenant stays until later.", "No, it's only free two months after that.")),
                  (a, p("Oh, that's too late for me. Thanks anyway.", "Then it won't work. Thanks."))]
        summary = (f"{a} asks about the {rooms} flat on {street}: {rent} a month plus bills and a deposit of "
                   f"{deposit}. It is not free by {move}, so {a} will not take it.")
    return lines, summary


def cake_order(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    kind = p.of(["chocolate", "lemon", "carrot", "red velvet", "strawberry"])
    size = p.of(["twelve", "twenty", "thirty", "eight"])
    text = p.of(["Happy 40th", "Congratulations", "Welcome Baby", "Good Luck"])
    day = p.of(["Saturday", "Friday morning", "the 23rd", "next Sunday"])
    price = p.of(["45", "60", "38", "75"])
    lines = [(b, p("Hello, Sweet Crumbs bakery.", "Sweet Crumbs, good afternoon.")),
             (a, p(f"Hi, I'd like to order a {kind} cake for {size} people.", f"Can I order a {kind} cake? It needs to feed {size}.")),
             (b, p("Lovely. Any writing on it?", "Of course. Would you like a message on top?")),
             (a, f"Yes, '{text} {c}'."),
             (b, p("When do you need it?", "And the date?")),
             (a, p(f"For {day}.", f"{day[0].upper() + day[1:]}, please.")),
             (b, p(f"That's {price} pounds. We need a deposit of ten.", f"It comes to {price}, with ten up front."))]
    if p.chance(0.5):
        lines += [(a, "I'll pay the deposit now."), (b, "Thank you, it's ordered.")]
        summary = (f"{a} orders a {kind} cake for {size} people reading '{text} {c}' for {day}. It costs {price} "
                   f"pounds and {a} pays the deposit now.")
    else:
        lines += [(a, "Can I pay it all on collection?"), (b, "We do need the deposit, sorry."),
                  (a, "Okay, I'll come by tomorrow to pay it.")]
        summary = (f"{a} orders a {kind} cake for {size} people reading '{text} {c}' for {day}. It costs {price} "
                   f"pounds and {a} will pay the deposit tomorrow.")
    return lines, summary


def car_repair(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    car = p.of(["Golf", "Corolla", "Fiesta", "Clio", "Civic"])
    fault = p.of(["the brakes squeak", "the engine light is on", "it won't start when it's cold", "the clutch slips"])
    cause = p.of(["worn brake pads", "a faulty sensor", "a weak battery", "a worn clutch plate"])
    cost = p.of(["120", "340", "95", "600"])
    ready = p.of(["tomorrow afternoon", "Friday", "Thursday at noon", "the end of the day"])
    lines = [(a, p(f"Hi, I dropped off the {car} this morning. Any news?", f"Hello, it's {a}, about the {car}.")),
             (b, p("Yes, I've had a look.", "We've checked it over.")),
             (a, p(f"So what's wrong with it? {fault[0].upper() + fault[1:]}.", f"And? Is it serious? {fault[0].upper() + fault[1:]}.")),
             (b, p(f"It's {cause}.", f"You've got {cause}, that's the problem.")),
             (b, p(f"It'll be about {cost} pounds with labour.", f"Parts and labour come to {cost}.")),
             (a, p("Ouch. When would it be ready?", "Okay. How long will it take?")),
             (b, p(f"By {ready}.", f"{ready[0].upper() + ready[1:]}, if the part arrives."))]
    if p.chance(0.7):
        lines += [(a, p("Go ahead then.", "Fine, please do it."))]
        summary = (f"{b} tells {a} that the {car}'s problem ({fault}) is {cause}. The repair costs about {cost} "
                   f"pounds and {a} agrees; it will be ready by {ready}.")
    else:
        lines += [(a, p("That's too much. I'll get a second quote.", "Let me think about it and call you back."))]
        summary = (f"{b} tells {a} that the {car}'s problem ({fault}) is {cause}. The repair would cost about "
                   f"{cost} pounds, and {a} does not agree to it yet.")
    return lines, summary


def interview_call(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    company = p.of(["Northwind", "Brightpath", "Acme Robotics", "Bluefin Labs", "Greenleaf Foods"])
    role = p.of(["data analyst", "junior designer", "sales manager", "backend developer", "office coordinator"])
    slot = p.of(["Tuesday at 10", "Thursday at 2", "Monday at 11:30", "Friday at 9"])
    form = p.of(["on video", "at the office", "by phone"])
    lines = [(b, p(f"Hi, is this {a}? I'm {b} from {company}.", f"Hello {a}, {b} calling from {company}.")),
             (a, p("Yes, hi!", "Speaking, hello.")),
             (b, p(f"Thanks for applying for the {role} role. We'd like to interview you.",
                   f"We liked your application for {role} and want to meet you.")),
             (a, p("That's great news!", "Oh, wonderful.")),
             (b, p(f"Would {slot} work? It'll be {form}.", f"We have {slot}, {form}."))]
    if p.chance(0.7):
        lines += [(a, "Yes, that works."), (b, "Great, I'll email the details.")]
        summary = f"{b} from {company} invites {a} to interview for the {role} role {form} on {slot}, and {a} accepts."
    else:
        alt = p.of(["Wednesday morning", "any afternoon", "next week"])
        lines += [(a, f"I can't then. Is {alt} possible?"), (b, "I'll check and get back to you.")]
        summary = (f"{b} from {company} invites {a} to interview for the {role} role {form} on {slot}. {a} can't "
                   f"make it and asks for {alt}; {b} will check.")
    return lines, summary


def borrow_item(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    item, use = p.of([("ladder", "to clean the gutters"), ("drill", "to put up shelves"),
                      ("lawnmower", "because mine broke"), ("folding chairs", "for a party"),
                      ("pressure washer", "to clean the patio"), ("tent", "for a camping trip")])
    back = p.of(["Sunday", "tomorrow night", "by the weekend", "Monday"])
    lines = [(a, p(f"Hi {b}, sorry to bother you.", f"Evening, {b}!")),
             (b, p("Not at all. How's the garden?", "Hi! Everything okay?")),
             (a, p("Fine, thanks.", "Good, good.")),
             (a, p(f"Could I borrow your {item}? I need it {use}.", f"Do you still have that {item}? I need one {use}.")),
             (b, p("Let me think, is it in the shed?", "I think so."))]
    if p.chance(0.7):
        lines += [(b, p("Yes, here you go.", "Sure, come and grab it.")),
                  (a, p(f"Thanks! I'll bring it back {back}.", f"You're a star. Back {back}, promise."))]
        summary = f"{a} borrows {b}'s {item} {use} and will return it {back}."
    else:
        lines += [(b, p(f"Sorry, I lent it to {c} last week.", f"Ah, {c} has it at the moment.")),
                  (a, p(f"No problem, I'll ask {c}.", f"Okay, I'll check with {c}."))]
        summary = f"{a} wants to borrow {b}'s {item} {use}, but {c} has it, so {a} will ask {c}."
    return lines, summary


def pay_back(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    what = p.of(["the concert tickets", "dinner on Friday", "the taxi to the airport", "the cabin booking"])
    amount = p.of(["35", "60", "22", "150", "48"])
    lines = friends_open(p, a, b)
    lines += [(b, p(f"Oh, by the way, you still owe me for {what}.", f"Also, did you forget about {what}?")),
              (a, p("Oh no, I totally forgot! How much was it?", "Right, sorry! What was my share?")),
              (b, p(f"{amount} euros.", f"It was {amount} each."))]
    if p.chance(0.6):
        lines += [(a, p("I'll send it right now.", "Sending it now.")), (b, p("Got it, thanks!", "Thanks!"))]
        summary = f"{b} reminds {a} that {a} owes {amount} for {what}, and {a} pays it straight away."
    else:
        day = p.of(["Friday", "payday", "the end of the month"])
        lines += [(a, p(f"Can I pay you on {day}? Money's tight.", f"Is {day} okay? I'm a bit broke.")),
                  (b, p("Sure, no rush.", "That's fine."))]
        summary = f"{b} reminds {a} that {a} owes {amount} for {what}. {a} will pay on {day}, and {b} is fine with it."
    return lines, summary


def counseling(topic_lines: Callable, risks: list[str], openers: list[tuple[str, str]], closers: list[str],
               disclosures: list[str], responses: list[str]):
    """A counseling-session scenario: topic_lines gives the facts and the plan; some sessions carry a risk marker
    (one of `risks`, said in one of `disclosures`, answered with one of `responses`)."""

    def scenario(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
        first, reply = p.of(openers)
        body, facts, plan = topic_lines(p, a, b, c)
        lines = [(b, first.format(a=a)), (a, reply)] + body
        summary = f"{a} tells {b} {facts}. {plan}"
        if p.chance(0.5):  # the risk comes up at the end, as it often does in a session
            risk = p.of(risks)
            lines += [(a, p.of(disclosures).format(risk=f"{{{{RED:{risk}}}}}")), (b, p.of(responses))]
            summary += f" Risk: {{{{RED:{risk}}}}}. They make a safety plan."
        lines.append((b, p.of(closers)))
        return lines, summary

    return scenario


TRAIN_RISKS = ["I stopped taking my medication two weeks ago", "I've been drinking most nights to get to sleep",
               "some nights I think everyone would be better off without me", "I haven't eaten a proper meal in days",
               "I drove home after taking two sleeping pills", "I've started hurting myself again",
               "I keep thinking about ending it"]
TRAIN_SESSION_OPEN = [("How has your week been, {a}?", "Up and down, to be honest."),
                      ("Welcome back, {a}. Where would you like to start today?", "With work, I think."),
                      ("Hi {a}. How are you feeling since last time?", "Tired, mostly.")]
TRAIN_SESSION_CLOSE = ["Let's stop there and see how it goes this week.", "Good. We'll pick this up next session.",
                       "That sounds like a plan. Same time next week?"]
TRAIN_DISCLOSURES = ["There's something else. {risk}.", "I should tell you, {risk}.", "Honestly? {risk}."]
TRAIN_RESPONSES = ["Thank you for telling me. We'll make a safety plan before you go.",
                   "I'm glad you said that. Let's agree on a safety plan today."]
TRAIN_SESSION = (TRAIN_RISKS, TRAIN_SESSION_OPEN, TRAIN_SESSION_CLOSE, TRAIN_DISCLOSURES, TRAIN_RESPONSES)


def work_stress(p: Pick, a: str, b: str, c: str):
    boss = p.of(["my manager", "the new director", "my team lead"])
    load = p.of(["three extra projects", "weekend emails", "deadlines every Friday", "a colleague's accounts"])
    sleep = p.of(["five hours", "four hours", "barely six hours"])
    step = p.of(["stop checking email after 7pm", "ask for one deadline to be moved", "take a proper lunch break",
                 "write down the tasks to raise with " + boss.replace("my ", "the ")])
    body = [(a, p(f"Work is crushing me. {boss[0].upper() + boss[1:]} keeps adding {load}.",
                  f"It's work again. Now I've got {load} on top, from {boss}.")),
            (b, p("That sounds like a lot. How is it affecting you?", "How is that showing up day to day?")),
            (a, p(f"I'm sleeping {sleep} a night and I snap at everyone.", f"I get {sleep} of sleep, if that.")),
            (b, p(f"What's one small change you could try?", "What could you control this week?")),
            (a, p(f"Maybe I could {step}.", f"I suppose I could {step}.")),
            (b, "Let's try that.")]
    boss3 = boss.replace("my ", a + "'s ")
    return body, f"that work is overwhelming: {boss3} keeps adding {load} and {a} sleeps {sleep} a night", \
        f"They agree {a} will {step}."


def sleep_trouble(p: Pick, a: str, b: str, c: str):
    wake = p.of(["3am", "4 in the morning", "2am"])
    habit = p.of(["scrolling on the phone in bed", "coffee late in the afternoon", "working in the bedroom"])
    step = p.of(["keep the phone out of the bedroom", "have no coffee after noon", "get up at the same time every day",
                 "write worries down before bed"])
    body = [(a, p(f"I keep waking up at {wake} and can't get back to sleep.", f"Sleep is bad. Every night I'm awake at {wake}.")),
            (b, p("What do you do when that happens?", "What goes through your mind then?")),
            (a, p(f"I just lie there worrying. And I admit I've been {habit}.", f"Worrying, mostly. Also, I've been {habit}.")),
            (b, p(f"Would you be willing to {step} for a week?", f"One idea: {step}. Could you try that?")),
            (a, p("I can try.", "Okay, I'll give it a go.")),
            (b, "Let's note how many nights it helps.")]
    return body, f"about waking at {wake} every night and worrying, and about {habit}", \
        f"They agree {a} will {step} for a week."


def family_conflict(p: Pick, a: str, b: str, c: str):
    who = p.of(["brother", "mother", "sister", "father"])
    about = p.of(["money for the house", "who cares for grandma", "the wedding plans", "my career change"])
    step = p.of([f"write a letter to the {who} first", f"suggest one calm phone call with the {who}",
                 "take a break from the family chat for a week"])
    body = [(a, p(f"My {who} and I had a huge fight about {about}.", f"I argued with my {who} again, about {about}.")),
            (b, p("What happened afterwards?", "How did it end?")),
            (a, p("We haven't spoken since. It's been ten days.", "Nobody has called. Ten days now.")),
            (b, p("What would you want from them?", "What would a good outcome look like?")),
            (a, p("Just to be heard, I think.", "For them to listen for once.")),
            (b, p(f"Maybe you could {step}.", f"How about you {step}?")),
            (a, "Yes, I think I can do that.")]
    about3 = about.replace("my ", a + "'s ")
    return body, f"about a fight with {a}'s {who} over {about3}; they have not spoken for ten days", \
        f"They agree {a} will {step}."


TRAIN_SCENARIOS = {
    "pet sitting": (pet_sitting, 1), "restaurant booking": (restaurant_booking, 1), "product return": (product_return, 1),
    "doctor reschedule": (doctor_reschedule, 1), "weekend hike": (weekend_hike, 1), "shift cover": (shift_cover, 1),
    "flat viewing": (flat_viewing, 1), "cake order": (cake_order, 1), "car repair": (car_repair, 1),
    "interview call": (interview_call, 1), "borrow item": (borrow_item, 1), "pay back": (pay_back, 1),
    "session: work stress": (counseling(work_stress, *TRAIN_SESSION), 2),
    "session: sleep": (counseling(sleep_trouble, *TRAIN_SESSION), 2),
    "session: family": (counseling(family_conflict, *TRAIN_SESSION), 2),
}


# ---- held-out situations: written only for the held-out file ---------------------------------------------------
HELD_SMALL_TALK = [
    ("Oh good, you're in. Spare me five minutes?", "Go on then."),
    ("Hiya {b}! Long time no see.", "I know! What's new?"),
    ("{b}! Just the person I needed.", "Uh oh. What do you need?"),
    ("Evening {b}, still up?", "Yep, can't sleep. Tell me."),
]


def held_open(p: Pick, a: str, b: str) -> Lines:
    first, reply = p.of(HELD_SMALL_TALK)
    return [(a, first.format(b=b)), (b, reply)]


def hotel_room(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    hotel = p.of(["the Seaview Hotel", "Hotel Adler", "the Grand Marina", "the Pinewood Lodge"])
    problem = p.of(["the air conditioning is broken", "there's no hot water", "the room smells of smoke",
                    "the window won't close"])
    room = p.of(["214", "508", "31", "1102"])
    lines = [(b, p(f"{hotel[4:] if hotel.startswith('the ') else hotel} front desk, {b} speaking.", f"Reception at {hotel}, good evening.")),
             (a, p(f"Hello, I'm in room {room}. I'm afraid {problem}.", f"Hi, room {room} here. Bad news: {problem}.")),
             (b, p("I do apologise. Let me look into it.", "Oh dear, I'm so sorry about that."))]
    if p.chance(0.6):
        new = p.of(["a suite on the top floor", "a sea-view room", "a bigger room on the fifth floor"])
        lines += [(b, p(f"We can move you to {new} at no extra cost.", f"I can offer {new}, free of charge.")),
                  (a, p("Oh, that's very kind. Yes please.", "Wonderful, we'll move now.")),
                  (b, p("A porter will come up with the new key.", "Someone will bring your key in ten minutes."))]
        summary = f"{a} tells {hotel}'s reception that in room {room} {problem}. {b} moves {a} to {new} for free."
    else:
        lines += [(b, p("We're fully booked, but a technician can come first thing tomorrow.",
                        "No rooms are free tonight; maintenance will fix it in the morning.")),
                  (a, p("Fine, but I'd like a discount.", "Okay. Can you knock something off the bill?")),
                  (b, p("I'll take off one night's breakfast.", "I'll give you twenty percent off tonight."))]
        summary = (f"{a} tells {hotel}'s reception that in room {room} {problem}. There are no free rooms, so it will "
                   f"be fixed in the morning and {a} gets a discount.")
    return lines, summary


def gym_cancel(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    gym = p.of(["FitZone", "Iron Temple", "PulseGym", "the Leisure Centre"])
    why, why3 = p.of([("I'm relocating to Glasgow", "{a} is relocating to Glasgow"), ("I injured my shoulder", "{a} injured a shoulder"),
                      ("it's become too expensive", "it has become too expensive"), ("I've joined a running club", "{a} has joined a running club")])
    why3 = why3.format(a=a)
    months = p.of(["two months", "three months", "one month"])
    lines = [(b, p(f"Welcome to {gym}, how can I help?", f"{gym} members desk, hi there.")),
             (a, p(f"I'd like to end my membership. {why[0].upper() + why[1:]}.", f"I want to quit the gym, as {why}.")),
             (b, p(f"Sorry to hear that. Your contract has {months} left.", f"I see. There are {months} left on the contract.")),
             (b, p("Would you like to freeze it instead?", "We could pause it rather than cancel?"))]
    if p.chance(0.5):
        lines += [(a, p("No, I really want to cancel.", "No thanks, just cancel it please.")),
                  (b, p(f"Then you'll pay the {months} and it ends after that.", f"Okay, it will stop in {months}."))]
        summary = f"{a} cancels the {gym} membership because {why3}. {a} must still pay the remaining {months}."
    else:
        lines += [(a, p("Actually, a pause sounds better.", "Oh, I didn't know. Freeze it then.")),
                  (b, p("Done, it's paused for now.", "Your membership is frozen."))]
        summary = f"{a} wants to cancel the {gym} membership because {why3}, but freezes it instead of paying the remaining {months}."
    return lines, summary


def moving_help(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    day = p.of(["Saturday morning", "Sunday", "the 30th", "next weekend"])
    what = p.of(["a sofa and a bookcase", "the piano", "twenty boxes of books", "a washing machine"])
    where = p.of(["the new flat in Leith", "the second floor", "my mum's garage", "the house across town"])
    lines = held_open(p, a, b)
    lines += [(a, p(f"I'm moving on {day}. Could you help me carry {what}?", f"Any chance you can lift {what} with me on {day}?")),
              (a, p(f"It all has to go to {where}.", f"Destination is {where}."))]
    where3 = where.replace("my ", a + "'s ")
    if p.chance(0.6):
        van = p.of(["a van", "my cousin's truck", "a trailer"])
        lines += [(b, p(f"Count me in. Should I bring {van}?", f"Sure. I can get {van} if that helps.")),
                  (a, p("That would be amazing!", "Yes please, that saves a fortune."))]
        summary = f"{a} is moving on {day} and asks {b} to help carry {what} to {where3}. {b} agrees and will bring {van.replace('my ', b + chr(39) + 's ')}."
    else:
        lines += [(b, p(f"Oh no, I'm at a wedding then. Have you tried {c}?", f"I'd love to but I'm working. {c} has a strong back!")),
                  (a, p(f"Right, I'll call {c}.", f"Fair enough, {c} it is."))]
        summary = f"{a} is moving on {day} and asks {b} to help carry {what} to {where3}. {b} is busy and suggests {c}."
    return lines, summary


def lost_luggage(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    frm = p.of(["Lisbon", "Dublin", "Athens", "Toronto"])
    bag = p.of(["a red suitcase", "a black duffel bag", "a green hard-shell case", "a grey backpack"])
    hotel = p.of(["the Harbour Inn", "a flat in the old town", "the airport Hilton"])
    lines = [(b, p("Baggage services, next please.", "Hello, lost baggage desk.")),
             (a, p(f"My bag didn't arrive on the flight from {frm}.", f"I just landed from {frm} and my luggage never came out.")),
             (b, p("Can you describe it?", "What does it look like?")),
             (a, p(f"It's {bag} with a yellow tag.", f"{bag[0].upper() + bag[1:]}, yellow tag on the handle.")),
             (b, p("It's still in the transfer airport. It'll be on the next flight.", "Our system shows it missed the connection."))]
    if p.chance(0.6):
        lines += [(b, p(f"We'll deliver it to you. Where are you staying?", "Give me an address and we'll send it.")),
                  (a, f"At {hotel}."),
                  (b, p("Expect it tomorrow by noon.", "It should be there tomorrow before lunch."))]
        summary = f"{a}'s {bag[2:] if bag.startswith('a ') else bag} did not arrive on the flight from {frm}. The airline will deliver it to {hotel} by noon tomorrow."
    else:
        lines += [(a, "I'd rather collect it myself."), (b, p("Then come back after 6pm.", "It lands at six tonight; come then."))]
        summary = f"{a}'s {bag[2:] if bag.startswith('a ') else bag} did not arrive on the flight from {frm}. {a} will collect it at the airport after 6pm."
    return lines, summary


def haircut(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    cut = p.of(["a trim", "a bob", "highlights", "a beard trim and a fade"])
    stylist = p.of(["Marco", "Jess", "Aiko", "Bruno"])
    slot = p.of(["Wednesday at 4", "Saturday at 10:30", "tomorrow at 1", "Friday at 5:45"])
    price = p.of(["30", "55", "80", "25"])
    lines = [(b, p("Snip & Style, hi!", "Hello, Snip & Style salon.")),
             (a, p(f"Hi, could I book {cut} with {stylist}?", f"I'd like {cut}, ideally with {stylist}.")),
             (b, p(f"{stylist} has {slot} open.", f"Let me see... {stylist} is free {slot}.")),
             (b, p(f"That's {price} pounds.", f"It'll be {price}."))]
    if p.chance(0.65):
        lines += [(a, p("Lovely, put me down.", "Perfect, book it.")), (b, "All booked in.")]
        summary = f"{a} books {cut} with {stylist} for {slot}, which costs {price} pounds."
    else:
        lines += [(a, p("Nothing earlier?", "Hmm, that's no good for me.")),
                  (b, p("Sorry, that's the first slot.", "Not with them, sorry.")),
                  (a, "I'll leave it for now then.")]
        summary = f"{a} wants {cut} with {stylist}, but the first slot is {slot}, which does not suit, so {a} does not book."
    return lines, summary


def surprise_party(p: Pick, a: str, b: str, c: str) -> tuple[Lines, str]:
    occasion = p.of(["50th birthday", "retirement", "promotion", "graduation"])
    venue = p.of(["the Fox and Hound", "our flat", "the rooftop bar", "the community hall"])
    date = p.of(["the 18th", "next Saturday", "Friday the 3rd"])
    task = p.of(["order the cake", "make a playlist", "send the invitations", "buy decorations"])
    lines = held_open(p, a, b)
    lines += [(a, p(f"Keep this quiet: I'm planning a surprise for {c}'s {occasion}.", f"Secret mission! {c}'s {occasion} party, a surprise.")),
              (b, p("Ooh, I'm in! When?", "How exciting. When and where?")),
              (a, p(f"On {date} at {venue}.", f"{venue[0].upper() + venue[1:]}, {date}.")),
              (a, p(f"Could you {task}?", f"Can I give you one job? {task[0].upper() + task[1:]}."))]
    if p.chance(0.7):
        lines += [(b, p("Leave it with me.", "Done, consider it handled."))]
        summary = f"{a} is planning a surprise {occasion} party for {c} on {date} at {venue}. {b} will {task}."
    else:
        lines += [(b, p(f"I'm hopeless at that, but I'll keep {c} busy that afternoon.", "Not my thing, but I'll get everyone there on time."))]
        summary = f"{a} is planning a surprise {occasion} party for {c} on {date} at {venue}. {b} won't {task} but offers other help."
    return lines, summary


HELD_RISKS = ["I've been skipping meals so I can study longer", "I bought pills and keep them in my drawer",
              "I haven't left my flat in nine days", "I scratched my arms until they bled last week",
              "I thought about walking into traffic"]
HELD_SESSION_OPEN = [("Come in, {a}. What's on your mind?", "A lot, as usual."),
                     ("Good to see you, {a}. Shall we begin?", "Yeah. It's been a rough stretch."),
                     ("So, {a}, what would you like to talk through?", "Mainly how I've been coping.")]
HELD_SESSION_CLOSE = ["We're out of time. Keep a note of how it goes.", "Let's check in on that next time.",
                      "Take care until our next appointment."]
HELD_DISCLOSURES = ["Can I be straight with you? {risk}.", "One more thing, and it's hard to say: {risk}.",
                    "Before we finish... {risk}."]
HELD_RESPONSES = ["That matters a lot. Before you leave we'll write a safety plan together.",
                  "Thank you for trusting me with that. We'll put a safety plan in place now."]
HELD_SESSION = (HELD_RISKS, HELD_SESSION_OPEN, HELD_SESSION_CLOSE, HELD_DISCLOSURES, HELD_RESPONSES)


def exam_anxiety(p: Pick, a: str, b: str, c: str):
    exam = p.of(["the bar exam", "my finals", "the driving test", "a chemistry resit"])
    when = p.of(["in three weeks", "next month", "on the 9th"])
    symptom, symptom3 = p.of([("my heart races when I open my notes", "{a}'s heart races when opening the notes"),
                              ("I freeze in mock tests", "{a} freezes in mock tests"), ("I feel sick every morning", "{a} feels sick every morning")])
    symptom3 = symptom3.format(a=a)
    step = p.of(["study in 25-minute blocks", "do a breathing exercise before each mock test",
                 "tell the tutor about the panic"])
    body = [(a, p(f"It's {exam}, {when}. I'm terrified.", f"{exam[0].upper() + exam[1:]} is {when} and I'm panicking.")),
            (b, p("What does the panic feel like?", "Tell me what happens in your body.")),
            (a, p(f"Honestly, {symptom}.", f"Well, {symptom}.")),
            (b, p(f"Would it help to {step}?", f"What if you tried to {step}?")),
            (a, p("I'll try that.", "Okay, worth a shot.")),
            (b, "Good, we'll see how it lands.")]
    exam3 = exam.replace("my ", a + "'s ")
    return body, f"about fear of {exam3} {when}: {symptom3}", f"They agree {a} will {step}."


def loneliness(p: Pick, a: str, b: str, c: str):
    since, since3 = p.of([("the breakup", "the breakup"), ("moving to a new city", "moving to a new city"),
                          ("my best friend emigrated", "{a}'s best friend emigrated"), ("I started working from home", "{a} started working from home")])
    since3 = since3.format(a=a)
    days = p.of(["weekends", "evenings", "Sundays"])
    step = p.of(["join the climbing club", "call one old friend this week", "go to the Thursday quiz night"])
    body = [(a, p(f"I've felt so alone since {since}.", f"Since {since} I barely talk to anyone.")),
            (b, p("When is it hardest?", "Are there times it gets worse?")),
            (a, p(f"{days[0].upper() + days[1:]}. They just drag.", f"The {days}, definitely.")),
            (b, p(f"Is there one thing you could try, like to {step}?", f"Some people find it helps to {step}.")),
            (a, p("Maybe. I'll try.", "I could do that.")),
            (b, "That's a good first step.")]
    return body, f"about feeling lonely since {since3}, worst at {days}", f"They agree {a} will {step}."


HELD_SCENARIOS = {
    "hotel room": (hotel_room, 1), "gym cancel": (gym_cancel, 1), "moving help": (moving_help, 1),
    "lost luggage": (lost_luggage, 1), "haircut": (haircut, 1), "surprise party": (surprise_party, 1),
    "session: exam anxiety": (counseling(exam_anxiety, *HELD_SESSION), 2),
    "session: loneliness": (counseling(loneliness, *HELD_SESSION), 2),
}


# ---- assembly ---------------------------------------------------------------------------------------------------
def compose(scenarios: dict, names: list[str], n: int, rng: random.Random) -> list[dict]:
    """n distinct dialogues, each situation drawn in proportion to its weight, each with three distinct names."""
    p = Pick(rng)
    kinds = [k for k, (_, w) in scenarios.items() for _ in range(w)]
    out, seen = [], set()
    while len(out) < n:
        kind = kinds[len(out) % len(kinds)]
        a, b, c = rng.sample(names, 3)
        lines, summary = scenarios[kind][0](p, a, b, c)
        dialogue = "\n".join(f"{who}: {text}" for who, text in lines)
        if dialogue in seen:
            continue
        seen.add(dialogue)
        out.append({"messages": [{"role": "user", "content": f"{INSTRUCTION}\n\n{dialogue}"},
                                 {"role": "assistant", "content": summary}]})
    rng.shuffle(out)
    return out


def build(seed: int = 2026, n_train: int = 420, n_held: int = 80) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    return compose(TRAIN_SCENARIOS, TRAIN_NAMES, n_train, rng), compose(HELD_SCENARIOS, HELD_NAMES, n_held, rng)


def write(out: Path) -> tuple[int, int]:
    return write_pair(out, "summaries", *build())


if __name__ == "__main__":
    main(__doc__, write, "dialogues")
