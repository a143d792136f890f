"""The voice judge (forge/eval/voice.py): the style classifier's AUC on known cases and against a plain scikit-learn
recomputation, copying and loops on planted runs, the profile on a text whose counts are known.

tests/data/voice/ holds two writers, items separated by "=====" lines: person.txt, a person's notes (casual, first
person, markdown, unicode, one empty item and one long one), and austen.txt, passages from Pride and Prejudice
(public domain), a clearly different style."""

import json
import random
import time
import unicodedata
from pathlib import Path

import pytest

from forge.eval import voice as v

DATA = Path(__file__).resolve().parents[2] / "data" / "voice"


def items(name: str) -> list[str]:
    out, cur = [], []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line == "=====":
            out.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    return out + ["\n".join(cur)]


PERSON, AUSTEN = items("person.txt"), items("austen.txt")


def test_data_is_what_the_tests_assume():
    assert len(PERSON) >= 40 and len(AUSTEN) >= 35
    assert sum(not t.strip() for t in PERSON) == 1
    assert max(len(t.split()) for t in PERSON) > 300  # the Porto note, five times the median
    assert any("é" in t for t in PERSON)


@pytest.fixture(scope="module")
def split_result():
    """The person's even items as the held-out texts; Austen, and the person's odd items, as two 'systems'."""
    return v.judge(PERSON[0::2], {"austen": AUSTEN, "same": PERSON[1::2]}, training_texts=None, reference_texts=None)


def test_a_different_style_is_told_apart_and_the_same_person_is_not(split_result):
    austen, same = split_result["systems"]["austen"], split_result["systems"]["same"]
    assert austen["auc"] >= 0.9 and austen["ci_low"] >= 0.8 and austen["folds"] == 5
    assert same["ci_low"] <= 0.5 <= same["ci_high"] and abs(same["auc"] - 0.5) <= 0.2
    assert "no better than chance" in same["words"] and "no better than chance" not in austen["words"]
    assert f"picks out yours {round(100 * austen['auc'])} %" in austen["words"]
    assert split_result["summary"].startswith("A style classifier tells austen's answers from yours")
    assert split_result["systems"]["same"]["empty"] == 1  # the empty item is odd-indexed: counted, not classified
    json.dumps(split_result)


def independent_cut(text: str, chars: int) -> str:
    """A plain re-implementation of the judge's cut: at most `chars` characters, not splitting a word."""
    text = unicodedata.normalize("NFC", text).strip()
    if len(text) <= chars:
        return text
    if text[chars].isspace():
        return text[:chars].rstrip()
    head = text[:chars]
    i = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    return (head[:i] if i > 0 else head).rstrip()


def independent_auc(person: list[str], system: list[str], chars: int, pipe=None, seed: int = 0) -> float:
    """The method written with plain scikit-learn calls: the PAN pipeline (scikit-learn's default logistic
    regression unless `pipe` is given), cross_val_predict, roc_auc_score."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    a = [independent_cut(t, chars) for t in person if t.strip()]
    b = [independent_cut(t, chars) for t in system if t.strip()]
    y = np.array([1] * len(a) + [0] * len(b))
    pipe = pipe or make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(2, 5), sublinear_tf=True,
                                                 lowercase=False), LogisticRegression(max_iter=1000))
    p = cross_val_predict(pipe, a + b, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                          method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def test_auc_agrees_with_an_independent_scikit_learn_implementation(split_result):
    # A harder case too: a 'system' that writes like the person half the time and like Austen the other half.
    rng = random.Random(1)
    mixed = rng.sample(PERSON[1::2], 11) + rng.sample(AUSTEN, 11)
    r = v.judge(PERSON[0::2], {"mixed": mixed}, reference_texts=[])
    assert 0.6 <= r["systems"]["mixed"]["auc"] <= 0.95
    for result, name, system in [(split_result, "austen", AUSTEN), (split_result, "same", PERSON[1::2]),
                                 (r, "mixed", mixed)]:
        ours = result["systems"][name]["auc"]
        # the judge's fast path (n-grams counted once for all folds) is exactly cross_val_predict of its pipeline
        pipeline = independent_auc(PERSON[0::2], system, result["cut_chars"], v.style_classifier())
        assert ours == pytest.approx(pipeline, abs=1e-3)
        if name != "austen":  # and agrees with scikit-learn's default solver (slower; Austen's 1.0 needs no check)
            plain = independent_auc(PERSON[0::2], system, result["cut_chars"])
            print(f"{name}: judge {ours:.4f}, plain lbfgs {plain:.4f}, judge's pipeline {pipeline:.4f}")
            assert ours == pytest.approx(plain, abs=0.05)


def test_the_bootstrap_resamples_each_side_and_matches_a_loop():
    import numpy as np
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    pos, neg = rng.normal(1, 1, 30), rng.normal(0, 1, 25)
    lo, hi = v.bootstrap_auc(pos, neg, resamples=400, seed=3)
    loop_rng = np.random.default_rng(3)  # the same draws, one resample at a time, through roc_auc_score
    cp = loop_rng.multinomial(30, np.full(30, 1 / 30), size=400)
    cn = loop_rng.multinomial(25, np.full(25, 1 / 25), size=400)
    aucs = [roc_auc_score([1] * 30 + [0] * 25, np.r_[np.repeat(pos, c), np.repeat(neg, d)]) for c, d in zip(cp, cn)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(aucs, [2.5, 97.5])))
    assert lo < roc_auc_score([1] * 30 + [0] * 25, np.r_[pos, neg]) < hi


def test_every_text_is_cut_to_one_length_at_a_word_boundary():
    assert v.cut("short", 10) == "short"
    assert v.cut("the quick brown fox", 12) == "the quick"   # "the quick br" would split "brown"
    assert v.cut("the quick brown fox", 10) == "the quick"   # the cut falls on the space
    assert v.cut("abcdefghijkl", 5) == "abcde"               # one long word: a hard cut
    assert v.cut_length([["a" * 10, "a" * 30, "a" * 50], ["b" * 100] * 3]) == 30
    long_output = "word " * 5000  # a very long output
    r = v.judge(PERSON[0::2], {"verbose": [long_output] * 5 + AUSTEN[:10]}, reference_texts=[])
    assert r["cut_chars"] < 1000  # the long outputs do not raise the cut: the smallest median sets it
    assert r["systems"]["verbose"]["auc"] is not None


def test_tiny_and_empty_sets_give_a_reason_or_fewer_folds():
    r = v.judge(PERSON[:3], {"tuned": AUSTEN[:10]}, reference_texts=[])
    t = r["systems"]["tuned"]
    assert t["auc"] is None and "too few texts" in t["reason"] and "could not be judged" in t["words"]
    assert r["summary"] == "Too few texts to judge the voice."
    r = v.judge(PERSON[:4], {"tuned": AUSTEN[:10] + ["", "  \n"]}, reference_texts=[])
    t = r["systems"]["tuned"]
    assert t["folds"] == 4 and t["auc"] is not None and t["empty"] == 2 and t["texts"] == 12
    r = v.judge(PERSON[:8], {"tuned": [""] * 8}, reference_texts=[])  # a model that answered nothing
    assert r["systems"]["tuned"]["auc"] is None and r["systems"]["tuned"]["profile"]["words_per_answer"] is None
    assert r["systems"]["tuned"]["copying"] is None and r["systems"]["tuned"]["loop_rate"] == 0
    json.dumps(r)
    assert "| style AUC" in v.markdown(r)
    r = v.judge(["a", "b", "c", "d", "e"], {"tuned": ["x", "y", "z", "w", "!"]}, reference_texts=[])
    assert "too short" in r["systems"]["tuned"]["reason"] and r["notes"]  # one-letter texts: a reason, no crash
    assert v.judge(PERSON[:6], {"tuned": AUSTEN[:6]}, cut_chars=0, reference_texts=[])["systems"]["tuned"]["reason"]


TRAINING = ("Sunday notes. I walked down to the allotment early and the frost had taken the last of the beans, "
            "which I should have picked on Thursday when I had the chance but didn't because of the rain. Next "
            "year I will plant them a fortnight sooner and cover the bed with fleece in October.")


def test_copying_finds_a_planted_twelve_word_run_and_not_an_eleven_word_one():
    index = v.CopyIndex([TRAINING, "", "A different note entirely."])
    words = TRAINING.split()
    twelve = " ".join(words[5:17])   # "the allotment early and the frost had taken the last of the"
    eleven = " ".join(words[5:16])
    filler = "Completely unrelated filler words go here to pad the answer out a little"
    # case, punctuation and line breaks do not hide a copy
    assert index.longest_run(f"{filler} {twelve.upper()}, {filler}") == (12, twelve.lower())
    assert index.longest_run(f"{filler} {eleven} {filler}")[0] == 0
    twenty = " ".join(words[20:40])
    assert index.longest_run(f"{filler}\n{twenty}\n{filler}")[0] == 20
    outputs = [f"{filler} {twelve} {filler}", f"{filler} {eleven} {filler}", "", f"Yes. {twenty}"]
    c = index.copying(outputs)
    assert c["share"] == 0.5 and c["copied"] == 2 and c["longest_run"] == 20
    assert [e["answer"] for e in c["examples"]] == [3, 0] and c["examples"][0]["words"] == 20
    r = v.judge(PERSON[:10], {"tuned": outputs * 2}, training_texts=[TRAINING], reference_texts=[])
    assert r["systems"]["tuned"]["copying"]["share"] == 0.5 and r["person"]["copying"]["share"] == 0


def test_loop_rate_finds_a_planted_loop():
    run = "and then I went back to"
    assert v.loops(f"Well, {run} the shop {run} the car {run} bed.")            # a 6-word run 3 times
    assert not v.loops(f"Well, {run} the shop {run} the car, then bed.")        # twice is not a loop
    assert not v.loops("one two three four five " * 2 + "one two three four five")  # a 5-word run is too short
    assert v.loops("no " * 8)  # overlapping occurrences count
    assert v.loop_rate([f"{run} x {run} y {run}", "fine", "", "also fine"]) == {"rate": 0.25, "loops": 1}


KNOWN = """# Weekly notes

I'm tired, but I've finished **two** things. Did you see my list?
- first item
- second item, isn’t it?
1. numbered item

See the footnote[^1] and __this__. Then stop!

[^1]: The footnote text."""


def test_profile_counts_a_known_text():
    p = v.profile([KNOWN, "", "We don't know. It's fine."])
    c = p["counts"]
    # sentences: heading, "I'm tired…things.", "Did you…list?", 3 list items, "See…this__.", "Then stop!",
    # "The footnote text."; then "We don't know.", "It's fine."
    assert c["sentences"] == 11
    assert c["first_person"] == 3          # I'm, I've, my
    assert c["contractions"] == 5          # I'm, I've, isn’t (a curly apostrophe), don't, It's
    assert c["questions"] == 2
    assert (c["headings"], c["lists"], c["bold"], c["footnotes"]) == (1, 3, 2, 1)
    words = ("weekly notes i'm tired but i've finished two things did you see my list first item second item isn't "
             "it numbered item see the footnote and this then stop the footnote text").split()
    assert c["words"] == len(words) + 5    # + "we don't know it's fine"; nothing from "1." or "[^1]"
    assert p["answers"] == 3 and p["empty"] == 1
    assert p["words_per_answer"] == round(c["words"] / 2, 1)
    assert p["markdown"] == {"headings": 0.5, "lists": 0.5, "bold": 0.5, "footnotes": 0.5}
    assert p["first_person_per_100_words"] == round(100 * 3 / c["words"], 2)
    # composed and decomposed accents are one word
    assert v.tokens(unicodedata.normalize("NFD", "Café crème")) == ["café", "crème"]


def test_distinctive_terms_against_the_reference_and_each_systems_usage(split_result):
    person = [f"Honestly, the garden is my favourite place, honestly. Note {i}: water the beans." for i in range(6)]
    reference = ["The capital of France is Paris.", "A triangle has three sides.", "Water boils at 100 degrees."] * 5
    terms = v.distinctive_terms(person, reference, top=5)
    assert terms[0]["term"] == "honestly" and terms[0]["count"] == 12
    assert all(t["term"] not in {"the", "is"} for t in terms[:3])
    r = v.judge(person * 2, {"copycat": person, "plain": reference}, reference_texts=reference)
    row = next(t for t in r["distinctive"] if t["term"] == "honestly")
    assert row["person_per_1k"] > 100 and row["systems"]["plain"] == 0 and row["systems"]["copycat"] > 100
    # the shipped general reference is the default
    table = split_result["distinctive"]
    assert len(table) == v.TOP_TERMS and {"i'm", "i"} & {t["term"] for t in table}
    assert all(t["systems"]["austen"] is not None for t in table)
    assert v.load_reference_texts() and "Madrid" in " ".join(v.load_reference_texts())


def test_judge_on_fifty_and_fifty_texts_is_quick(capsys):
    rng = random.Random(0)
    sentences = [s for t in PERSON for s in v.sentences(t)]
    other = [s for t in AUSTEN for s in v.sentences(t)]
    person = [" ".join(rng.sample(sentences, 12)) for _ in range(50)]
    tuned = [" ".join(rng.sample(sentences, 6) + rng.sample(other, 4)) for _ in range(50)]
    t = time.perf_counter()
    r = v.judge(person, {"tuned": tuned}, training_texts=PERSON, reference_texts=None)
    took = time.perf_counter() - t
    assert r["systems"]["tuned"]["auc"] is not None
    with capsys.disabled():
        print(f"\nvoice judge on 50 + 50 texts: {took:.2f} s (judge's own clock {r['seconds']:.2f} s)")
