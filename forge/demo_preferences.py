"""`forge demo --task preferences`: a preference is the whole point. The reminders task's answers arrive written by
a chatty model — most open with filler ("Sure! Here's your reminder: …", "Certainly! …") — and are approved as
they are, so the SFT run learns the habit. Then the person fixes it the way people do in Curate: a seeded script
edits the filler out of some answers (each edit is a DPO pair: edited over original) and rejects some others (KTO's
undesirable labels; every approved answer is a desirable one). DPO and KTO each train on top of the SFT run
(`--from`), and Eval compares each with the SFT model on the held-out requests: the filler rate and exact match,
with paired intervals.

Nothing here is simulated but the person's keystrokes: the edits and rejections go through the store's decision
log exactly as Curate's do, and the pairs come from forge/data/preferences.py like anyone's.
"""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Callable

from forge.demo import (DEMO_DIR, TASKS, DemoTask, demo_base, every_15_s, first_rows, fresh_workspace, keep_base,
                        train)
from forge.store import Store

OPENERS = ("Sure! Here's your reminder: ", "Certainly! I've noted it: ", "Of course! ", "Absolutely — here it is: ",
           "Happy to help! Reminder: ", "Sure thing! ")
FILLER_SHARE = 0.6
"""Share of the training answers the chatty writer opens with filler."""
EDITED_SHARE, REJECTED_SHARE = 0.35, 0.15
"""Of the filler answers, the person edits the filler out of this share (DPO pairs) and rejects this share (KTO)."""
FILLER_RE = re.compile(r"^\W*(sure|certainly|of course|absolutely|happy to help|great question|here(?:'s| is)"
                       r"|i'd be happy|i've noted|no problem)\b", re.IGNORECASE)
"""An answer that opens with filler (the openers above and the ones small chat models use on their own)."""

PREF_SPEC = {"max_steps": 30, "batch_size": 8, "learning_rate": 5e-4, "lora_r": 16, "lora_alpha": 32,
             "max_seq_len": "auto", "eval_steps": 15, "save_steps": 15, "lr_scheduler": "cosine",
             "warmup_ratio": 0.05, "beta": 0.1, "forgetting_check": False}
"""DPO and KTO on top of the SFT run: 30 steps of 8 (two passes over the ~130 pairs)."""


def filler_rate(outputs: list[str]) -> dict:
    """{"n", "filler", "rate"}: how many answers open with filler."""
    hits = sum(1 for o in outputs if FILLER_RE.search(o or ""))
    return {"n": len(outputs), "filler": hits, "rate": round(hits / len(outputs), 4) if outputs else None}


def chatty_rows(seed: int = 0) -> list[dict]:
    """The reminders training file as a chatty model would have written it: FILLER_SHARE of the answers get an
    opener (seeded)."""
    rng = random.Random(seed)
    rows = []
    for i, line in enumerate((DEMO_DIR / "reminders.jsonl").read_text(encoding="utf-8").splitlines()):
        rec = json.loads(line)
        answer = (rng.choice(OPENERS) + rec["output"]) if rng.random() < FILLER_SHARE else rec["output"]
        rows.append({"extract_key": f"llm:chatty-writer:{i}", "source_kind": "llm:chatty-writer",
                     "source_ref": f"reminders.jsonl:{i + 1}", "line": i + 1, "tags": [],
                     "messages": [{"role": "user", "content": rec["input"]},
                                  {"role": "assistant", "content": answer}]})
    return rows


def person_fixes(store: Store, seed: int = 1) -> dict:
    """What the person does in Curate after seeing the SFT model's filler: edit it out of some answers, reject some
    others (seeded, through the store's decisions as Curate makes them). Returns the counts."""
    rng = random.Random(seed)
    filler = [ex for ex in store.examples(status="approved") if FILLER_RE.search(ex.messages[-1]["content"])]
    rng.shuffle(filler)
    n_edit, n_reject = round(len(filler) * EDITED_SHARE), round(len(filler) * REJECTED_SHARE)
    for ex in filler[:n_edit]:
        answer = ex.messages[-1]["content"]
        fixed = next(answer[len(o):] for o in OPENERS if answer.startswith(o))
        store.edit(ex.id, ex.messages[:-1] + [{"role": "assistant", "content": fixed}])
    store.decide("reject", {ex.id: {"status": "rejected", "reason": "opens with filler"}
                            for ex in filler[n_edit:n_edit + n_reject]}, reason="forge demo: filler")
    return {"filler": len(filler), "edited": n_edit, "rejected": n_reject}


def run_preferences_demo(workspace: Path, say: Callable[[str], None] = print, max_steps: int | None = None,
                         heldout_limit: int | None = None, base_model: str | None = None,
                         bases_from: Path | None = None) -> dict:
    """SFT on chatty answers → the person's edits and rejections → DPO and KTO on top of SFT → Eval of SFT vs base and
    of DPO and KTO vs SFT on the held-out requests, with the filler rate of every system. Every run trains on
    `base_model` (forge.demo.demo_base; default the bundled SmolLM2) and "base" is that base's GGUF. `max_steps`
    overrides the preference runs' steps (the SFT run keeps the reminders demo's)."""
    from forge import eval as ev
    from forge.data.dataset import export_dataset
    from forge.data.preferences import counts, describe
    from forge.models import export as ex

    base = demo_base(base_model, bases_from)
    t0 = time.perf_counter()
    ws = fresh_workspace(Path(workspace))
    keep_base(base, ws)
    task = TASKS["reminders"]
    config = task.config(ws)
    store = Store.for_workspace(ws)
    added = store.ingest(chatty_rows())["added"]
    ids = store.ids(status="pending")
    store.decide("approve-all", {i: {"status": "approved"} for i in ids}, reason="forge demo")
    say(f"imported {added} reminders written by a chatty model ({FILLER_SHARE:.0%} open with filler) and approved "
        f"them as they are")
    dataset = ws / "exports" / "dataset"
    export_dataset(store, dataset, config)
    say(f"training on {base.id} ({base.name})…")
    sft_id, _, sft_minutes = train(store, config, task, dataset, say, None, base.id, prefix="sft: ")
    fixes = person_fixes(store)
    say(f"the person edits the filler out of {fixes['edited']} answers and rejects {fixes['rejected']}: "
        + describe(counts(store)))
    minutes = {"sft": sft_minutes}
    models = {"sft": ex.export_adapter(store, config, sft_id)["model_id"]}
    for method in ("dpo", "kto"):
        spec = {**PREF_SPEC, "method": method, "from_run": sft_id}
        run_id, _, minutes[method] = train(store, config, DemoTask("", "", spec, "requests"), dataset, say,
                                           max_steps, base.id, prefix=f"{method}: ")
        models[method] = ex.export_adapter(store, config, run_id)["model_id"]
    held = first_rows(DEMO_DIR / task.heldout_file, heldout_limit, ws / "exports" / "heldout.jsonl")
    results, rates = {}, {}
    for name, model_id, baseline in (("sft", models["sft"], "base"), ("dpo", models["dpo"], models["sft"]),
                                     ("kto", models["kto"], models["sft"])):
        say(f"evaluating {name} against {baseline} on the held-out requests…")
        r = ev.evaluate(store, model_id, baseline, test_file=str(held), max_tokens=task.max_tokens,
                        progress=every_15_s(say), config=config)
        stored = ev.latest_pair(store, model_id, r["baseline_id"], r["dataset"])
        rates[name] = filler_rate(ev.outputs_of(stored[0]["outputs"]))
        if name == "sft":
            rates["base"] = filler_rate(ev.outputs_of(stored[1]["outputs"]))
        results[name] = {"exact_match": r["model"].get("exact_match"),
                         "baseline_exact_match": r["baseline"].get("exact_match"),
                         "comparisons": r.get("comparisons", {}),
                         "baseline": baseline, "baseline_id": r["baseline_id"], "model_id": model_id, "n": r["n"]}
    store.close()
    return {"task": "preferences", "base": base.id, "workspace": str(ws), "fixes": fixes, "filler_rate": rates,
            "results": results, "train_minutes": minutes, "minutes": round((time.perf_counter() - t0) / 60, 1),
            "models": models}

