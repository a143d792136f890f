"""Labelled near-duplicate pairs for the dedup precision/recall test.

Each base conversation comes with a hand-written paraphrase (a duplicate), mechanical variants (case,
punctuation, whitespace, a typo, one word changed: duplicates) and a hand-written example on the same topic
that says something different (not a duplicate)."""

# (user, assistant, paraphrase (user, assistant), related-but-distinct (user, assistant))
BASES = [
    (("How should I take critical feedback on a design doc?",
      "Wait a day before replying. Most comments are right once the sting fades; answer the ones about scope with your reasons."),
     ("What's the best way to handle harsh feedback on my design document?",
      "Give it a day before you respond. Once the sting is gone most comments turn out to be right; for the scope ones, explain your reasoning."),
     ("How do I give critical feedback on someone else's design doc?",
      "Start with what works, then raise at most three issues, each with a concrete suggestion and a question rather than a verdict.")),
    (("Should I keep my old car another year?",
      "Yes: repairs cost less than the depreciation on a new one, and you drive under 6,000 km a year."),
     ("Is it worth keeping the old car for one more year?",
      "Keep it. Fixing it is cheaper than the value a new car loses, and you only drive about 6,000 km a year."),
     ("Should I buy an electric car next year?",
      "Only if you can charge at home; public charging costs more than petrol for the distances you drive.")),
    (("What is write-ahead logging in SQLite?",
      "In WAL mode readers don't block the writer and the writer doesn't block readers; a commit is durable once the WAL frame is synced."),
     ("Explain SQLite's WAL mode.",
      "With write-ahead logging, readers and the writer don't block each other, and a commit is durable as soon as its WAL frame is synced to disk."),
     ("How do I back up an SQLite database safely?",
      "Use the online backup API or VACUUM INTO; copying the file while a writer is active can give a corrupt copy.")),
    (("Why did my sourdough fail?",
      "The kitchen was too cold. At 17 °C the dough barely rose; at 24 °C it doubled in five hours."),
     ("What went wrong with my sourdough bread?",
      "It was the temperature: at 17 °C the dough hardly rose, while at 24 °C it doubled within five hours."),
     ("How often should I feed a sourdough starter?",
      "Twice a day at room temperature, or once a week if you keep it in the fridge.")),
    (("How do I stop a retry loop from flooding the queue?",
      "Add exponential backoff with jitter and a cap on attempts, and alert on queue depth rather than on errors."),
     ("What keeps retries from filling up the queue?",
      "Use exponential backoff with jitter, limit the number of attempts, and alert on how deep the queue gets instead of on errors."),
     ("How do I make a queue consumer idempotent?",
      "Give every message an id and record processed ids in the same transaction as the side effect.")),
    (("What did the sleep experiment show?",
      "Two weeks without screens after 22:00: I fell asleep faster on 11 of 14 nights."),
     ("What were the results of the no-screens sleep experiment?",
      "After two weeks with no screens past 22:00, I fell asleep more quickly on 11 nights out of 14."),
     ("Does caffeine after lunch affect my sleep?",
      "Yes: on days with coffee after 14:00 I slept on average forty minutes less.")),
    (("Why did I turn down the migration project?",
      "I would have done both projects badly, so I offered two hours of review a week instead of leading it."),
     ("Why did I say no to leading the migration?",
      "Doing both projects would have meant doing both badly; instead I offered to review for two hours each week."),
     ("Why did I agree to lead the hiring process?",
      "It was a chance to shape the team, and the time cost was only two interviews a week.")),
    (("What is LoRA?",
      "LoRA learns two small matrices whose product is a low-rank update to a frozen weight matrix, so only a few megabytes are trained and saved."),
     ("Explain low-rank adaptation briefly.",
      "Instead of training the full weights, LoRA trains a pair of small matrices whose product forms a low-rank update to the frozen matrix; the adapter is only a few MB."),
     ("What is QLoRA?",
      "QLoRA trains LoRA adapters on top of a base model quantised to 4 bits, cutting memory enough to fine-tune 7B models on one consumer GPU.")),
    (("How do index fund fees compound?",
      "A 1% annual fee over 30 years costs about a quarter of the final amount, as surely as returns compound."),
     ("What does a 1% fund fee cost over decades?",
      "Over thirty years a 1% yearly fee eats roughly a quarter of what you would have ended with."),
     ("Should I pick individual stocks or index funds?",
      "Index funds, unless you enjoy research as a hobby and accept that most pickers trail the index.")),
    (("What should a meeting without an agenda get?",
      "Declined by default. Ask for an agenda first; most such meetings turn out to be an email."),
     ("How do I handle meetings that have no agenda?",
      "Decline them by default and ask for an agenda; most of them could have been an email."),
     ("How long should a weekly team meeting be?",
      "Thirty minutes, with a written agenda and decisions recorded at the end.")),
    (("Why move to a four-day week?",
      "My Friday output is low, and the long weekend lets me finish the course I keep dropping."),
     ("What's the reason for switching to four days a week?",
      "Fridays are my least productive day, and a three-day weekend gives me time to finally complete the course I keep abandoning."),
     ("How do I ask my manager for remote work?",
      "Propose a three-month trial with clear measures of output, and offer to be in the office for planning days.")),
    (("How do I negotiate a salary?",
      "Anchor with a reason, not just a number; let silence work for you; decide your walk-away point before the call."),
     ("Tips for salary negotiation?",
      "Give a reason along with your anchor number, let silence do some of the work, and know your walk-away point before you get on the call."),
     ("How do I negotiate the price of a used car?",
      "Check comparable listings, point out needed repairs, and make a first offer about 15% below asking.")),
    (("What is a Python generator?",
      "A function with yield that returns an iterator producing values lazily, so a file stays open only while someone iterates."),
     ("Explain generators in Python.",
      "Generators are functions using yield; they return an iterator that produces values lazily, which keeps a file open only as long as iteration continues."),
     ("What is a Python decorator?",
      "A function that takes a function and returns a new one, used to add behaviour like caching or logging around calls.")),
    (("How do I keep a habit of walking without headphones?",
      "Put one walk a week in the calendar and leave the phone at home; the best ideas come when I'm not holding it."),
     ("How can I stick to phone-free walks?",
      "Schedule a weekly walk and leave your phone behind; good ideas show up when your hands are empty."),
     ("How do I start running regularly?",
      "Three short runs a week beat one long one; consistency matters more than distance at the start.")),
]

TYPO = {"the": "teh", "and": "adn", "with": "wiht"}


def conversation(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def variants(user: str, assistant: str) -> list[tuple[str, str, str]]:
    """Mechanical near-duplicates of one conversation."""
    words = assistant.split()
    typo = " ".join(TYPO.get(w, w) for w in words)
    if typo == assistant:
        typo = assistant.replace("e", "a", 1)
    swap = words[:]
    swap[len(swap) // 2] = "really " + swap[len(swap) // 2]
    return [
        ("case", user.upper(), assistant.lower()),
        ("punctuation", user.rstrip("?.!") + "!!", assistant.replace(",", "").replace(";", ".")),
        ("whitespace", "  " + user.replace(" ", "   "), assistant.replace(". ", ".\n\n")),
        ("typo", user, typo),
        ("small edit", user, " ".join(swap)),
    ]


def labelled_pairs() -> list[tuple[list[dict], list[dict], bool, str]]:
    pairs = []
    for (u, a), (pu, pa), (ru, ra) in BASES:
        base = conversation(u, a)
        pairs.append((base, conversation(pu, pa), True, "paraphrase"))
        for kind, vu, va in variants(u, a):
            pairs.append((base, conversation(vu, va), True, kind))
        pairs.append((base, conversation(ru, ra), False, "related"))
        pairs.append((conversation(pu, pa), conversation(ru, ra), False, "related"))
    # Different topics entirely: every base against the next base's related example.
    for k, ((u, a), _, _) in enumerate(BASES):
        ru, ra = BASES[(k + 1) % len(BASES)][2]
        pairs.append((conversation(u, a), conversation(ru, ra), False, "unrelated"))
    return pairs
