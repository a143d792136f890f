"""Dataset files as people download them, written at test time with `datasets` and pyarrow from the Python rows
below (no binaries in git): Parquet, Arrow (datasets' stream format and Feather), `save_to_disk` folders (a
DatasetDict with splits and a single Dataset) and a Hub-style folder of Parquet shards. The rows are messy on
purpose: None and empty cells, a list where text belongs, a class-label column, a Self-Instruct instances column,
a chat column with a bad turn."""

from __future__ import annotations

from pathlib import Path

ALPACA = {
    "instruction": ["Translate to English.", "Say hi.", None, "Name a colour.", "   ", "Count to three."],
    "input": ["bonjour", "", None, None, "x", ""],
    "output": ["hello", "hi", "orphan output", "", "y", "one, two, three"],
}  # rows 2 (None instruction), 3 (empty output) and 4 (blank instruction) are skipped as empty

CHAT = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q1"},
     {"role": "assistant", "content": "a1"}],
    [],                                                                   # empty
    [{"role": "user", "content": "q3"}, {"role": "wizard", "content": "?"}],  # unknown role
    [{"role": "user", "content": "q4"}, {"role": "assistant", "content": "a4"}],
    [{"role": "user", "content": "q5"}],                                  # no answer
]

SELF_INSTRUCT = {
    "instruction": ["Give the antonym.", "Write a haiku.", "Classify the sentiment."],
    "instances": [[{"input": "hot", "output": "cold"}, {"input": "up", "output": "down"}], [],
                  [{"input": "great film", "output": "positive"}, {"input": "meh", "output": None}]],
    "is_classification": [False, False, True],
}

PAIRS = {
    "question": ["What is 2+2?", "Capital of France?", "Empty answer?", "Listy?"],
    "answer": ["4", "Paris", None, "fine"],
    "tags": [["math"], [], None, ["x", "y"]],
}

CLASSIFIED = {"text": ["loved it", "hated it", "it was fine"], "label": [1, 0, 1]}


def write_all(root: Path) -> dict[str, Path]:
    """Every fixture under root; returns name → path."""
    import pyarrow as pa
    import pyarrow.feather as feather
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["alpaca.parquet"] = root / "alpaca.parquet"
    Dataset.from_dict(ALPACA).to_parquet(str(out["alpaca.parquet"]))

    out["chat.arrow"] = root / "chat-arrow"
    chat = Dataset.from_dict({"messages": CHAT})
    chat.save_to_disk(str(out["chat.arrow"]))  # its data-00000-of-00001.arrow is the Arrow file datasets writes
    out["chat.arrow"] = next(out["chat.arrow"].glob("*.arrow"))

    out["pairs.feather"] = root / "pairs.feather"
    feather.write_feather(pa.table({"prompt": ["p1", "p2", "p3"], "response": ["r1", None, "r3"],
                                    "blob": [b"\xff\xfe", b"", None]}), str(out["pairs.feather"]))

    out["self_instruct.parquet"] = root / "self_instruct.parquet"
    Dataset.from_dict(SELF_INSTRUCT).to_parquet(str(out["self_instruct.parquet"]))

    features = Features(text=Value("string"), label=ClassLabel(names=["negative", "positive"]))
    splits = DatasetDict(train=Dataset.from_dict(PAIRS),
                         test=Dataset.from_dict({"question": ["held out?"], "answer": ["yes"], "tags": [["t"]]}),
                         validation=Dataset.from_dict({"question": ["val?"], "answer": ["v"], "tags": [[]]}))
    out["saved_dict"] = root / "saved_dict"
    splits.save_to_disk(str(out["saved_dict"]))

    out["saved_single"] = root / "saved_single"
    Dataset.from_dict(CLASSIFIED, features=features).save_to_disk(str(out["saved_single"]))

    out["classified.parquet"] = root / "classified.parquet"
    Dataset.from_dict(CLASSIFIED, features=features).to_parquet(str(out["classified.parquet"]))

    out["hub"] = root / "hub"
    (out["hub"] / "data").mkdir(parents=True)
    Dataset.from_dict({"prompt": ["t1", "t2"], "completion": ["c1", "c2"]}).to_parquet(
        str(out["hub"] / "data" / "train-00000-of-00002.parquet"))
    Dataset.from_dict({"prompt": ["t3"], "completion": ["c3"]}).to_parquet(
        str(out["hub"] / "data" / "train-00001-of-00002.parquet"))
    Dataset.from_dict({"prompt": ["e1"], "completion": ["d1"]}).to_parquet(
        str(out["hub"] / "data" / "test-00000-of-00001.parquet"))
    (out["hub"] / "README.md").write_text("---\nlicense: mit\n---\n")

    out["damaged.parquet"] = root / "damaged.parquet"
    out["damaged.parquet"].write_bytes(b"PAR1" + bytes(range(256)) * 4)
    return out
