"""Preference data from what the person already tells forge: DPO pairs (chosen vs rejected answer to one prompt)
and KTO labels (an answer marked good or bad), each naming where it came from, and their export as TRL's format
(export_preferences, `forge dataset export --preferences`). A pure function of the store: the examples, the
decision log, the Eval votes and the stored drafts. Nothing here writes to the store; build it again after any
undo, redo or crash and it is the same.

Pairs, by source:
- `edit`: an approved example whose final answer the person edited, when that answer was not theirs to begin with
  (anything but a vault note: generated, chat exports, datasets, CSV rows). chosen = the answer now, rejected = the
  answer as imported (the `before` of the first decision that changed it). Undoing the edit removes the pair.
- `vote`: an Eval vote for the tuned model or the baseline on one prompt; chosen = the voted system's answer,
  rejected = the other's. Ties, empty answers and identical answers give no pair.
- `import`: an approved example imported as a pair (meta["rejected"]): chosen = its answer (edited or not).
- `self-play`: an approved vault note (the person's own writing) with a stored draft (`forge prefs draft`): the
  model's own greedy answer to the note's prompt is rejected, the note is chosen (SPIN, Chen et al. 2024). A
  draft counts only for the prompt it answered.

KTO labels, by source: `approve` (approved examples: desirable), `reject` (rejected examples: undesirable),
`import` (approved examples imported with meta["label"]), `edit` (the imported answer an edit replaced:
undesirable), and both sides of every pair (chosen desirable, rejected undesirable); one label per (prompt,
answer, label), the first source named keeps it (an approved edit's answer is also its pair's chosen).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forge import __version__
from forge.config import Config
from forge.data.dataset import SPLITS, DatasetError, note_of, plan_split, split
from forge.store import Store
from forge.store.evals import prompt_hash

PERSON_SOURCES = ("obsidian",)
"""Source kinds whose answers the person wrote: editing them corrects the person's own text, which is no
preference over a machine's."""

PAIR_SOURCES = ("edit", "vote", "import", "self-play")
LABEL_SOURCES = ("approve", "reject", "import", "edit", "pair")


@dataclass
class Pair:
    prompt: list[dict]
    chosen: str
    rejected: str
    source: str
    ref: str
    """Where it came from, in words a person can look up: "example 12", "eval 3 prompt 7 (vote: model)"."""
    example_id: int | None = None
    note: str | None = None
    """The note the example came from (pairs of one note stay in one split)."""

    def record(self) -> dict:
        """TRL's conversational preference format, with forge's provenance."""
        return {"prompt": self.prompt, "chosen": [{"role": "assistant", "content": self.chosen}],
                "rejected": [{"role": "assistant", "content": self.rejected}], "source": self.source,
                "ref": self.ref}


@dataclass
class Label:
    prompt: list[dict]
    completion: str
    label: bool
    source: str
    ref: str
    example_id: int | None = None
    note: str | None = None

    def record(self) -> dict:
        """TRL's conversational unpaired-preference (KTO) format, with forge's provenance."""
        return {"prompt": self.prompt, "completion": [{"role": "assistant", "content": self.completion}],
                "label": self.label, "source": self.source, "ref": self.ref}


@dataclass
class Preferences:
    pairs: list[Pair] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)

    def counts(self) -> dict:
        """{"pairs": {source: n}, "pairs_total": n, "labels": {"desirable": n, "undesirable": n},
        "labels_by_source": {source: n}} (every source listed, zeros included)."""
        by_pair = {s: 0 for s in PAIR_SOURCES}
        for p in self.pairs:
            by_pair[p.source] = by_pair.get(p.source, 0) + 1
        by_label = {s: 0 for s in LABEL_SOURCES}
        for lb in self.labels:
            by_label[lb.source] = by_label.get(lb.source, 0) + 1
        good = sum(1 for lb in self.labels if lb.label)
        return {"pairs": by_pair, "pairs_total": len(self.pairs),
                "labels": {"desirable": good, "undesirable": len(self.labels) - good},
                "labels_by_source": by_label}

    def to_json(self) -> dict:
        return {"pairs": [asdict(p) for p in self.pairs], "labels": [asdict(lb) for lb in self.labels]}


def split_answer(messages: list[dict]) -> tuple[list[dict], str] | None:
    """(prompt turns, final answer) of a conversation that ends with a non-empty assistant turn, else None."""
    if len(messages) < 2 or messages[-1].get("role") != "assistant" or not messages[-1].get("content", "").strip():
        return None
    return [{"role": m["role"], "content": m["content"]} for m in messages[:-1]], messages[-1]["content"]


def original_messages(store: Store, example_id: int) -> list[dict] | None:
    """The example's messages before the first decision that changed them (its imported text), or None when no
    decision ever changed them."""
    with store.lock:
        rows = store.conn.execute(
            "SELECT before, after FROM decisions WHERE kind='do' AND EXISTS (SELECT 1 FROM "
            "json_each(decisions.example_ids) e WHERE e.value=?) ORDER BY id", (example_id,)).fetchall()
    key = str(example_id)
    for row in rows:
        before, after = json.loads(row["before"]).get(key), json.loads(row["after"]).get(key)
        if before and after and before.get("messages") != after.get("messages"):
            return before["messages"]
    return None


def _edit_pairs(store: Store, examples: list) -> tuple[list[Pair], list[Label]]:
    pairs, labels = [], []
    for ex in examples:
        if not ex.edited or ex.source_kind in PERSON_SOURCES:
            continue
        now, orig = split_answer(ex.messages), original_messages(store, ex.id)
        was = split_answer(orig) if orig else None
        if now is None or was is None or now[1].strip() == was[1].strip():
            continue
        ref = f"example {ex.id} (edited)"
        pairs.append(Pair(now[0], now[1], was[1], "edit", ref, ex.id, note_of(ex)))
        labels.append(Label(was[0], was[1], False, "edit", ref, ex.id, note_of(ex)))
    return pairs, labels


def _import_pairs(examples: list) -> list[Pair]:
    out = []
    for ex in examples:
        rejected = ex.meta.get("rejected")
        now = split_answer(ex.messages)
        if not isinstance(rejected, str) or not rejected.strip() or now is None or now[1].strip() == rejected.strip():
            continue
        out.append(Pair(now[0], now[1], rejected, "import", f"example {ex.id} (imported pair)", ex.id, note_of(ex)))
    return out


def _draft_pairs(store: Store, examples: list) -> list[Pair]:
    latest: dict[int, dict] = {}
    for d in store.drafts():  # oldest first: the newest draft of any model wins
        latest[d["example_id"]] = d
    out = []
    for ex in examples:
        d = latest.get(ex.id)
        if d is None or ex.source_kind not in PERSON_SOURCES:
            continue
        now = split_answer(ex.messages)
        if now is None or prompt_hash(now[0]) != d["prompt_hash"] or not d["text"].strip():
            continue
        if d["text"].strip() == now[1].strip():
            continue
        out.append(Pair(now[0], now[1], d["text"], "self-play", f"example {ex.id} (draft by {d['model_id']})",
                        ex.id, note_of(ex)))
    return out


def _vote_pairs(store: Store) -> list[Pair]:
    with store.lock:
        votes = [dict(r) for r in store.conn.execute(
            "SELECT model_id, baseline_id, dataset, prompt_index, vote FROM votes WHERE vote IN ('model','baseline') "
            "ORDER BY model_id, baseline_id, dataset, prompt_index").fetchall()]
    latest: dict[tuple[str, str], dict] = {}
    out = []
    for v in votes:
        outputs = []
        for mid in (v["model_id"], v["baseline_id"]):
            if (mid, v["dataset"]) not in latest:
                with store.lock:
                    row = store.conn.execute("SELECT id, outputs FROM evals WHERE model_id=? AND dataset=? "
                                             "ORDER BY id DESC LIMIT 1", (mid, v["dataset"])).fetchone()
                latest[(mid, v["dataset"])] = ({"id": row["id"], "outputs": json.loads(row["outputs"])}
                                               if row else None)
            outputs.append(latest[(mid, v["dataset"])])
        if None in outputs or any(v["prompt_index"] >= len(o["outputs"]) for o in outputs):
            continue
        rec_m, rec_b = (o["outputs"][v["prompt_index"]] for o in outputs)
        win, lose = (rec_m, rec_b) if v["vote"] == "model" else (rec_b, rec_m)
        chosen, rejected = (win.get("output") or "").strip(), (lose.get("output") or "").strip()
        if not chosen or not rejected or chosen == rejected or win.get("error") or lose.get("error"):
            continue
        prompt = rec_m.get("messages") or [{"role": "user", "content": rec_m.get("prompt", "")}]
        winner = v["model_id"] if v["vote"] == "model" else v["baseline_id"]
        out.append(Pair(prompt, chosen, rejected, "vote",
                        f"eval {outputs[0]['id']} prompt {v['prompt_index'] + 1} (voted {winner})"))
    return out


def build(store: Store) -> Preferences:
    """Every pair and label the store holds now (see the module's docstring), in a stable order."""
    approved = store.examples(status="approved")
    rejected = store.examples(status="rejected")
    edit_pairs, edit_labels = _edit_pairs(store, approved)
    pairs = edit_pairs + _vote_pairs(store) + _import_pairs(approved) + _draft_pairs(store, approved)
    labels: list[Label] = []
    for ex in approved:
        now = split_answer(ex.messages)
        if now is None or isinstance(ex.meta.get("rejected"), str):
            continue
        label = ex.meta.get("label")
        if isinstance(label, bool):
            labels.append(Label(now[0], now[1], label, "import", f"example {ex.id} (imported label)", ex.id,
                                note_of(ex)))
        else:
            labels.append(Label(now[0], now[1], True, "approve", f"example {ex.id}", ex.id, note_of(ex)))
    for ex in rejected:
        now = split_answer(ex.messages)
        if now is not None:
            labels.append(Label(now[0], now[1], False, "reject", f"example {ex.id} (rejected)", ex.id, note_of(ex)))
    labels += edit_labels
    for p in pairs:
        labels.append(Label(p.prompt, p.chosen, True, "pair", p.ref, p.example_id, p.note))
        labels.append(Label(p.prompt, p.rejected, False, "pair", p.ref, p.example_id, p.note))
    seen, unique = set(), []
    for lb in labels:  # one label per (prompt, answer, label): an approved edit's answer is also its pair's chosen
        key = (json.dumps(lb.prompt, sort_keys=True), lb.completion.strip(), lb.label)
        if key not in seen:
            seen.add(key)
            unique.append(lb)
    return Preferences(pairs, unique)


def counts(store: Store) -> dict:
    """build(store).counts(): how many pairs and KTO labels exist, by source."""
    return build(store).counts()


def describe(c: dict) -> str:
    """One line for Curate and Train: "7 preference pairs (edit 3, vote 4) · KTO 40 good / 5 bad"."""
    parts = ", ".join(f"{k} {v}" for k, v in c["pairs"].items() if v)
    pairs = f"{c['pairs_total']} preference pair{'s' if c['pairs_total'] != 1 else ''}" + (f" ({parts})" if parts
                                                                                          else "")
    return f"{pairs} · KTO {c['labels']['desirable']} good / {c['labels']['undesirable']} bad"


PREFERENCE_KINDS = {"dpo": "pairs", "kto": "labels"}


def export_preferences(store: Store, out: str | Path, config: Config, kind: str = "dpo", val: float | None = None,
                       test: float | None = None, seed: int | None = None, keep_leaks: bool = False,
                       split_of: dict[int, str] | None = None) -> dict:
    """Write the store's preference data (forge/data/preferences.py) as TRL's conversational format: for dpo
    `prompt`/`chosen`/`rejected`, for kto `prompt`/`completion`/`label`, each with its `source` and `ref`;
    train/val/test JSONL and manifest.json, in `out`.

    The split is SFT's: a record made from an example lands in the split `forge dataset export` gives that example
    (with the same seed and fractions), so no held-out note's prompt is trained on by either; a record of a
    rejected example or an Eval vote is a group of its own, split with the same seed, and a held-out one whose
    prompt and answer have a near-duplicate in the training records moves into train unless keep_leaks. Each file
    is written whole and renamed into place, so a crash mid-export leaves the earlier files or the new ones, and
    exporting again gives the same bytes: the export is a pure function of the store. `split_of` (example id →
    split) is an SFT export's split already made with the same settings (a run's manifest), so it is not made
    twice."""
    from forge.data.leakage import find_leaks

    if kind not in PREFERENCE_KINDS:
        raise DatasetError(f"unknown preference kind {kind!r}: use dpo or kto")
    d = config.dataset
    val = d.val if val is None else val
    test = d.test if test is None else test
    seed = d.seed if seed is None else seed
    prefs = build(store)
    items = prefs.pairs if kind == "dpo" else prefs.labels
    if not items:
        what = ("no preference pairs: edit machine-written answers in Curate, vote in Eval, import a preference "
                "dataset, or draft answers to your notes (forge prefs draft)") if kind == "dpo" else \
            "no KTO labels: approve or reject some examples first"
        raise DatasetError(what)
    where: dict[int, str] = split_of or {}
    if split_of is None:
        try:
            by_hash, parts, _, _ = plan_split(store, config, val, test, seed, keep_leaks)
            where = {by_hash[h].id: name for name in SPLITS for h in parts[name]}
        except DatasetError:
            pass  # nothing approved yet (votes only): every record is split on its own
    keyed = {}
    for it in items:
        rec = it.record()
        key = hashlib.sha256(json.dumps(rec, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
        keyed.setdefault(key, (it, rec))
    fixed = {k: where[it.example_id] for k, (it, _) in keyed.items() if it.example_id in where}
    loose = sorted(k for k in keyed if k not in fixed)
    loose_groups = {k: g for k in loose if (g := keyed[k][0].note)}
    parts = split(loose, val, test, seed, loose_groups) if loose else {n: [] for n in SPLITS}
    for k, name in fixed.items():
        parts[name].append(k)
    moved = []
    if not keep_leaks:
        held = [(name, k) for name in ("test", "val") for k in parts[name] if k not in fixed]

        def convo(it):
            return it.prompt + [{"role": "assistant", "content": it.chosen if kind == "dpo" else it.completion}]
        if held and parts["train"]:
            leaks = find_leaks(store, [convo(keyed[k][0]) for _, k in held],
                               [convo(keyed[k][0]) for k in parts["train"]], config.dedup, transitive=True)
            for lk in leaks:
                name, k = held[lk.held]
                parts[name].remove(k)
                parts["train"].append(k)
                moved.append(keyed[k][0].ref)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts, sources = {}, {}
    for name in SPLITS:
        if name == "val" and os.environ.get("FORGE_EXPORT_FAULT") == "preferences":
            os.kill(os.getpid(), signal.SIGKILL)  # testing only: a crash with one split written
        tmp = out / f"{name}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for k in sorted(parts[name]):
                it, rec = keyed[k]
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                sources[it.source] = sources.get(it.source, 0) + 1
        tmp.replace(out / f"{name}.jsonl")
        counts[name] = len(parts[name])
    digest = hashlib.sha256("\n".join(sorted(keyed)).encode()).hexdigest()
    manifest = {**counts, "kind": kind, "format": PREFERENCE_KINDS[kind], "dataset_hash": digest, "seed": seed,
                "val_fraction": val, "test_fraction": test, "sources": dict(sorted(sources.items())),
                "leaks_moved": sorted(moved), "forge_version": __version__}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out / "manifest.json")
    return {**counts, "kind": kind, "dataset_hash": digest, "sources": manifest["sources"], "leaks_moved": moved}
