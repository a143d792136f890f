"""The voice judge (issue 25): does a model write like the person whose writing the references are, and is what
looks like their voice really copying?

Four parts, each a plain function, and `judge` that runs them all on one eval's texts and returns a JSON-ready dict:

- Indistinguishability (`style_auc`): the PAN authorship-verification baseline. A TF-IDF over character 2–5-grams
  (sublinear tf, case kept: capitalisation is a habit too) feeds a logistic regression that learns to tell the
  person's held-out texts from one system's outputs. Every text is first cut to the same number of characters, at a
  word boundary (`cut`), so length is not the tell: the smallest of the median lengths of the person's and every
  system's texts (`cut_length`), one cut for all so the tuned and the base are judged on the same length. Empty
  outputs are left out of the classifier and counted.
  Stratified k-fold cross-validation (shuffled with the seed) gives every text a probability from a model that did
  not see it; the ROC AUC of those out-of-fold probabilities is the figure. 1.0: always told apart; 0.5: the
  classifier cannot tell them apart. AUC is not accuracy: it is the chance that, given one of the person's texts and
  one of the system's, the classifier rates the person's as the more person-like, and that is how `in_words` says it.
  The 95 % interval is a percentile bootstrap (1000 resamples, fixed seed) over the texts: the out-of-fold scores
  are resampled with replacement, the person's and the system's separately (so every resample keeps both classes at
  their sizes), and the AUC recomputed. The classifier is not refitted per resample: the interval covers the
  sampling of the evaluated texts, not the randomness of training.
- A voice profile (`profile`): sentence length, words per answer, first-person and contraction rates, questions and
  markdown habits, from documented regular expressions; and the person's most distinctive words and two-word
  phrases against a general reference text (`distinctive_terms`, log-odds with an informative Dirichlet prior,
  Monroe, Colaresi & Quinn 2008), with how often each system uses them.
- Copying (`CopyIndex`): the share of outputs that repeat a run of 12 or more words from the training notes, and
  the longest such run, so memorisation is never mistaken for voice.
- Loops (`loops`): an answer loops when some 6-word run occurs 3 or more times in it.

No UI and no heavy import at module level: scikit-learn and numpy are imported where the classifier runs.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import time
import unicodedata
from collections import Counter
from pathlib import Path

FOLDS = 5
RESAMPLES = 1000
MIN_PER_CLASS = 4          # fewer non-empty texts than this on either side: no AUC, a reason instead
SHORT_CUT = 100            # a cut below this many characters gets a note: the classifier sees little text
COPY_RUN = 12              # words: a run this long from the training notes is copying
LOOP_RUN, LOOP_TIMES = 6, 3
TOP_TERMS = 15
EXAMPLES = 3               # copied runs shown per system
EXAMPLE_WORDS = 40         # a shown run is cut to this many words

# A word: letters/digits, with inner apostrophes kept (don't, I'm, rock'n'roll). Underscores are not word characters.
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'"})

FIRST_PERSON = frozenset({"i", "me", "my", "mine", "myself", "i'm", "i've", "i'd", "i'll"})
# A contraction: a negative n't, an auxiliary 're/'ve/'ll/'d/'m, or 's after a pronoun-like word (it's, that's,
# let's), where it is "is"/"has"/"us" rather than a possessive; y'all. "John's" is not counted: it is mostly possessive.
_CONTRACTION = re.compile(r"^(?:[^\W\d_]+n't|[^\W\d_]+'(?:re|ve|ll|d|m)|y'all|(?:it|that|there|here|what|who|where|"
                          r"when|why|how|he|she|let|this|everyone|everybody|someone|somebody|something|nothing|"
                          r"nobody)'s)$")

# Markdown habits, counted in the raw text (each documented by its pattern):
# an ATX heading line ("# Title" .. "###### Title", up to 3 spaces of indent);
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+\S", re.M)
# a list item line ("- x", "* x", "+ x", "• x", "1. x", "2) x", any indent);
LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S", re.M)
# bold: **text** or __text__ on one line (not flanked by word characters, so snake_case__names are not bold);
BOLD = re.compile(r"\*\*(?=\S)[^\n]*?\S\*\*|(?<!\w)__(?=\S)[^\n]*?\S__(?!\w)")
# a footnote reference [^1] / [^note] (a definition "[^1]:" is not counted again).
FOOTNOTE = re.compile(r"\[\^[^\]\s]+\](?!:)")
_FOOTNOTE_MARK = re.compile(r"\[\^[^\]\s]+\]:?")
MARKDOWN = {"headings": HEADING, "lists": LIST_ITEM, "bold": BOLD, "footnotes": FOOTNOTE}

# Sentences: split at . ! ? … (with any closing quote or bracket) followed by whitespace; a paragraph break, a
# heading line and a list item also end one, a single line break inside a paragraph does not (hard-wrapped notes).
# No abbreviation list: "e.g. this" counts two. A fragment with no word is not a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’»)\]])\s+")
_BLOCK = re.compile(r"\n[ \t]*\n")
_LINE_MARKER = re.compile(r"^\s*(?:#{1,6}|[-*+•]|\d{1,3}[.)])[ \t]+")
_QUESTION = re.compile(r"\?[!?.…]*[\"'”’»)\]]*$")


def clean(text: str | None) -> str:
    """NFC-normalised and stripped (composed/decomposed accents and stray edge whitespace are never a tell)."""
    return unicodedata.normalize("NFC", text or "").strip()


def tokens(text: str) -> list[str]:
    """Lower-case word tokens with apostrophes made straight (’ → ')."""
    return _WORD.findall(clean(text).lower().translate(_APOSTROPHES))


def sentences(text: str) -> list[str]:
    """The sentences of `text` (rules above the pattern), markdown line markers removed."""
    out: list[str] = []
    for block in _BLOCK.split(clean(text)):
        run: list[str] = []
        for line in block.splitlines():
            if not line.strip():
                continue
            if HEADING.match(line) or LIST_ITEM.match(line):
                if run:
                    out.append(" ".join(run))
                    run = []
                out.append(_LINE_MARKER.sub("", line).strip())
            else:
                run.append(line.strip())
        if run:
            out.append(" ".join(run))
    return [s for seg in out for s in _SENTENCE_END.split(seg) if _WORD.search(s)]


def profile(texts: list[str]) -> dict:
    """The voice profile of a list of answers. Words are counted in the sentences, so list numbers and footnote
    marks are not words. Rates are per 100 words or per 100 sentences over all non-empty
    answers together; markdown habits are the share of non-empty answers that use each at least once. `counts` holds
    the raw tallies they come from."""
    c: Counter = Counter()
    using: Counter = Counter()
    for raw in texts:
        text = clean(raw)
        if not text:
            c["empty"] += 1
            continue
        c["answers_with_text"] += 1
        sents = sentences(_FOOTNOTE_MARK.sub("", text))
        toks = [t for s in sents for t in tokens(s)]
        c["words"] += len(toks)
        c["first_person"] += sum(t in FIRST_PERSON for t in toks)
        c["contractions"] += sum(bool(_CONTRACTION.match(t)) for t in toks)
        c["sentences"] += len(sents)
        c["questions"] += sum(bool(_QUESTION.search(s)) for s in sents)
        for name, pattern in MARKDOWN.items():
            k = len(pattern.findall(text))
            c[name] += k
            using[name] += k > 0
    n = c["answers_with_text"]

    def rate(num: int, den: int, per: int = 100) -> float | None:
        return round(per * num / den, 2) if den else None

    return {"answers": len(texts), "empty": c["empty"],
            "words_per_answer": round(c["words"] / n, 1) if n else None,
            "words_per_sentence": round(c["words"] / c["sentences"], 1) if c["sentences"] else None,
            "first_person_per_100_words": rate(c["first_person"], c["words"]),
            "contractions_per_100_words": rate(c["contractions"], c["words"]),
            "questions_per_100_sentences": rate(c["questions"], c["sentences"]),
            "markdown": {name: round(using[name] / n, 3) if n else None for name in MARKDOWN},
            "counts": {k: c[k] for k in ("words", "sentences", "first_person", "contractions", "questions",
                                         *MARKDOWN)}}


# ---- distinctive words and phrases -------------------------------------------------------------------------------

def _grams(toks: list[str], order: int) -> list[str]:
    return toks if order == 1 else [" ".join(toks[i:i + order]) for i in range(len(toks) - order + 1)]


def _has_letter(term: str) -> bool:
    return any(ch.isalpha() for ch in term)


def distinctive_terms(person: list[str], reference: list[str], top: int = TOP_TERMS, min_count: int = 3,
                      min_texts: int = 2) -> list[dict]:
    """The person's most distinctive words and two-word phrases against `reference`: the log-odds ratio with an
    informative Dirichlet prior (Monroe, Colaresi & Quinn 2008, "Fightin' Words", eq. 16–22), as a z-score.

    For a term w with count y_p in the person's texts (n_p terms of its order in all) and y_r in the reference (n_r):
    delta = log((y_p+a_w)/(n_p+a0-y_p-a_w)) - log((y_r+a_w)/(n_r+a0-y_r-a_w)), var = 1/(y_p+a_w) + 1/(y_r+a_w),
    z = delta/sqrt(var). The prior a_w = a0 * pi_w, where pi_w is the mean of the term's relative frequencies in the
    two texts (each weighs the same, however short the reference) and a0 = max(n_r, 100): the prior is as strong as
    the reference's own evidence, so a term the small reference happens to lack is shrunk rather than infinite.
    Words and two-word phrases are scored separately (each against its own order's totals) and ranked together.
    Only terms with a letter, used `min_count`+ times in `min_texts`+ of the person's texts, and over-represented
    (z > 0) are kept; the `top` by z. Returns [{term, z, count}]."""
    person_toks = [tokens(t) for t in person]
    ref_toks = [tokens(t) for t in reference]
    scored = []
    for order in (1, 2):
        yp: Counter = Counter()
        df: Counter = Counter()
        for toks in person_toks:
            grams = _grams(toks, order)
            yp.update(grams)
            df.update(set(grams))
        yr: Counter = Counter(g for toks in ref_toks for g in _grams(toks, order))
        n_p, n_r = sum(yp.values()), sum(yr.values())
        if not n_p or not n_r:
            continue
        a0 = max(n_r, 100)
        for w, y_p in yp.items():
            if y_p < min_count or df[w] < min_texts or not _has_letter(w):
                continue
            y_r = yr[w]
            a_w = a0 * 0.5 * (y_p / n_p + y_r / n_r)
            delta = (math.log((y_p + a_w) / (n_p + a0 - y_p - a_w))
                     - math.log((y_r + a_w) / (n_r + a0 - y_r - a_w)))
            z = delta / math.sqrt(1 / (y_p + a_w) + 1 / (y_r + a_w))
            if z > 0:
                scored.append((z, w, y_p))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [{"term": w, "z": round(z, 2), "count": y} for z, w, y in scored[:top]]


def usage_per_1k(texts: list[str], terms: list[str]) -> dict[str, float | None]:
    """How often each term (a word or a two-word phrase) occurs in `texts`, per 1,000 words."""
    uni: Counter = Counter()
    bi: Counter = Counter()
    words = 0
    for t in texts:
        toks = tokens(t)
        words += len(toks)
        uni.update(toks)
        bi.update(_grams(toks, 2))
    return {term: (round(1000 * (bi if " " in term else uni)[term] / words, 2) if words else None)
            for term in terms}


def reference_path() -> Path:
    """The general reference text forge ships (the forgetting check's set, scripts/make_reference_data.py)."""
    from forge import REPO_ROOT

    return REPO_ROOT / "data" / "reference" / "general.jsonl"


def load_reference_texts(path: str | Path | None = None) -> list[str]:
    """Every message of a chat JSONL ({"messages": [{"role", "content"}]}), both sides: general English."""
    out = []
    for line in Path(path or reference_path()).read_text(encoding="utf-8").splitlines():
        if line.strip():
            out += [m.get("content") or "" for m in json.loads(line).get("messages", [])]
    return [t for t in out if t.strip()]


# ---- copying and loops -------------------------------------------------------------------------------------------

class CopyIndex:
    """The 12-word shingles of the training notes (lower-case word tokens, so case, punctuation and line breaks do
    not hide a copy), each stored as the hash of its word tuple: memory and build time are linear in the notes, and
    a lookup is one set probe per window of an output."""

    def __init__(self, training_texts: list[str], n: int = COPY_RUN):
        self.n = n
        self.shingles: set[int] = set()
        for text in training_texts:
            toks = tokens(text)
            self.shingles.update(hash(tuple(toks[i:i + n])) for i in range(len(toks) - n + 1))

    def longest_run(self, text: str) -> tuple[int, str]:
        """(words, the run itself) of the longest stretch of `text` in which every n-word window occurs in the
        training notes; (0, "") when no window does. A run the length of one window is a verbatim n-word copy;
        longer runs are chains of overlapping copied windows (in practice one passage copied on). Linear in the
        text."""
        toks = tokens(text)
        n, best, best_start, start = self.n, 0, 0, None
        for i in range(len(toks) - n + 1):
            if hash(tuple(toks[i:i + n])) in self.shingles:
                if start is None:
                    start = i
                if i - start + n > best:
                    best, best_start = i - start + n, start
            else:
                start = None
        return best, " ".join(toks[best_start:best_start + best])

    def copying(self, outputs: list[str]) -> dict:
        """share: the fraction of all outputs (empty ones included, as not copying) with a run of n+ words from the
        training notes; copied: how many; longest_run: the longest run in words; examples: the longest few runs."""
        runs = [(self.longest_run(t), i) for i, t in enumerate(outputs)]
        hits = sorted(((w, i, run) for (w, run), i in runs if w >= self.n), key=lambda r: (-r[0], r[1]))
        return {"share": round(len(hits) / len(outputs), 4) if outputs else None, "copied": len(hits),
                "longest_run": max((w for w, _, _ in hits), default=0),
                "examples": [{"answer": i, "words": w,
                              "run": " ".join(run.split()[:EXAMPLE_WORDS]) + (" …" if w > EXAMPLE_WORDS else "")}
                             for w, i, run in hits[:EXAMPLES]]}


def loops(text: str, n: int = LOOP_RUN, times: int = LOOP_TIMES) -> bool:
    """True when some n-word run (lower-case word tokens) occurs `times` or more times in `text` (overlapping
    occurrences count: "no no no no no no no no" loops)."""
    toks = tokens(text)
    counts = Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    return any(v >= times for v in counts.values())


def loop_rate(outputs: list[str]) -> dict:
    """The share of all outputs (empty ones included, as not looping) that loop, and how many."""
    k = sum(loops(t) for t in outputs)
    return {"rate": round(k / len(outputs), 4) if outputs else None, "loops": k}


# ---- indistinguishability ----------------------------------------------------------------------------------------

def cut(text: str, chars: int) -> str:
    """`text` cut to at most `chars` characters, at the last whitespace before the cut when the cut would split a word
    (a hard cut when the head has no whitespace at all)."""
    if len(text) <= chars:
        return text
    if chars <= 0:
        return ""
    head = text[:chars]
    if not text[chars].isspace() and not head[-1].isspace():
        m = re.search(r"\s\S*$", head)
        if m and m.start() > 0:
            head = head[:m.start()]
    return head.rstrip()


def cut_length(groups: list[list[str]]) -> int:
    """One cut for every comparison: the smallest of the groups' median lengths in characters (non-empty texts), so
    at least half of every group's texts reach it, and the tuned and the base AUC are measured on the same length."""
    medians = [statistics.median(len(t) for t in g) for g in groups if g]
    return int(min(medians)) if medians else 0


def style_classifier(seed: int = 0):
    """The PAN baseline as one scikit-learn pipeline: TF-IDF over character 2–5-grams (sublinear tf, case kept) and
    an L2 logistic regression (C=1; liblinear's dual solver, the fast one for a few hundred texts with tens of
    thousands of features: 0.02 s a fit where the primal or lbfgs take 0.4–0.9 s). `style_auc` computes exactly what
    cross_val_predict of this pipeline would, faster."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline([("tfidf", TfidfVectorizer(**NGRAMS, sublinear_tf=True)),
                     ("logreg", LogisticRegression(**LOGREG, random_state=seed))])


NGRAMS = {"analyzer": "char", "ngram_range": (2, 5), "lowercase": False}
LOGREG = {"solver": "liblinear", "dual": True, "max_iter": 1000}


def char_counts(texts: list[str]):
    """The character 2–5-gram counts of `texts` (a sparse matrix, one row a text), counted once for every fold and
    every comparison: counting is most of a TF-IDF fit."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(**NGRAMS).fit_transform(texts)


def oof_scores(counts, y, folds: int, seed: int):
    """Out-of-fold P(person) for each row of `counts`: StratifiedKFold(folds, shuffle=True, random_state=seed); in
    each fold the TF-IDF is fitted on the training rows alone, over the n-grams they contain (a test text's n-grams
    that no training text has are dropped, as a vectoriser fitted on the training fold would drop them), and the
    logistic regression likewise. The same as cross_val_predict(style_classifier(seed), texts, y, cv=...,
    method="predict_proba")[:, 1], without re-counting the n-grams in every fold."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    scores = np.zeros(len(y))
    for train, test in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        cols = np.flatnonzero(counts[train].getnnz(axis=0))
        tfidf = TfidfTransformer(sublinear_tf=True).fit(counts[train][:, cols])
        model = LogisticRegression(**LOGREG, random_state=seed).fit(tfidf.transform(counts[train][:, cols]), y[train])
        scores[test] = model.predict_proba(tfidf.transform(counts[test][:, cols]))[:, 1]
    return scores


def bootstrap_auc(pos, neg, resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the AUC of scores `pos` (the person's texts) over `neg` (the system's), resampling each
    side's texts with replacement separately. Exact and vectorised: with M[i, j] = 1 if pos[i] > neg[j], 0.5 if
    equal, else 0, a resample that draws text i c_i times and text j d_j times has AUC = c·M·d / (n_pos·n_neg)."""
    import numpy as np

    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    m = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    rng = np.random.default_rng(seed)
    cp = rng.multinomial(len(pos), np.full(len(pos), 1 / len(pos)), size=resamples)
    cn = rng.multinomial(len(neg), np.full(len(neg), 1 / len(neg)), size=resamples)
    aucs = np.einsum("bi,ij,bj->b", cp, m, cn) / (len(pos) * len(neg))
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(aucs, [tail, 100 - tail])
    return float(lo), float(hi)


def style_auc(person: list[str], system: list[str], folds: int = FOLDS, seed: int = 0, resamples: int = RESAMPLES,
              counts=None) -> dict:
    """Out-of-fold ROC AUC of the style classifier telling `person` (label 1) from `system` (label 0), texts as given
    (already cut and without empties), with its bootstrap interval. `counts`: their `char_counts`, person's rows
    first, when the caller has them. Fewer texts than folds on a side: fewer folds; fewer than MIN_PER_CLASS on a
    side: auc None and a reason."""
    n_min = min(len(person), len(system))
    out = {"auc": None, "ci_low": None, "ci_high": None, "folds": None, "reason": None}
    if n_min < MIN_PER_CLASS:
        out["reason"] = (f"too few texts to train a classifier ({len(person)} of yours, {len(system)} of the "
                         f"system's; at least {MIN_PER_CLASS} of each)")
        return out
    import numpy as np
    from sklearn.metrics import roc_auc_score

    k = max(2, min(folds, n_min))
    y = np.array([1] * len(person) + [0] * len(system))
    try:
        counts = char_counts(person + system) if counts is None else counts
    except ValueError:  # scikit-learn's "empty vocabulary": not one text has two characters
        out["reason"] = "the texts are too short to have character n-grams to learn from"
        return out
    scores = oof_scores(counts, y, k, seed)
    lo, hi = bootstrap_auc(scores[y == 1], scores[y == 0], resamples, seed)
    out.update(auc=round(float(roc_auc_score(y, scores)), 4), ci_low=round(lo, 4), ci_high=round(hi, 4), folds=k)
    return out


def whose(name: str) -> str:
    """ "the tuned model's" for the usual system names, "NAME's" for anything else."""
    return f"the {name} model's" if name in ("tuned", "base") else f"{name}'s"


def in_words(name: str, r: dict) -> str:
    """One system's indistinguishability as a sentence, saying what the AUC means (not accuracy: the pairwise one)."""
    if r["auc"] is None:
        return f"{whose(name).capitalize()} answers could not be judged: {r['reason']}."
    pct = round(100 * r["auc"])
    s = (f"Given one of your texts and one of {whose(name)} answers, a style classifier picks out yours {pct} % of "
         f"the time (AUC {r['auc']:.2f}, 95 % interval {r['ci_low']:.2f}–{r['ci_high']:.2f}; 50 % = "
         f"indistinguishable, 100 % = always told apart)")
    if r["ci_low"] <= 0.5 <= r["ci_high"]:
        s += ": no better than chance"
    return s + "."


def summary(systems: dict[str, dict]) -> str:
    """'A style classifier tells the tuned model's answers from yours 71 % of the time, the base model's 99 %'."""
    judged = [(name, r["auc"]) for name, r in systems.items() if r["auc"] is not None]
    if not judged:
        return "Too few texts to judge the voice."
    first, rest = judged[0], judged[1:]
    s = f"A style classifier tells {whose(first[0])} answers from yours {round(100 * first[1])} % of the time"
    s += "".join(f", {whose(n)} {round(100 * a)} %" for n, a in rest)
    return s + " (given one of each, how often it picks yours: 50 % = indistinguishable, 100 % = always told apart)."


# ---- the judge -----------------------------------------------------------------------------------------------------

def judge(person: list[str], systems: dict[str, list[str]], training_texts: list[str] | None = None,
          reference_texts: list[str] | None = None, seed: int = 0, folds: int = FOLDS, cut_chars: int | None = None,
          resamples: int = RESAMPLES, top_terms: int = TOP_TERMS) -> dict:
    """The voice judge on one eval: `person` the person's held-out texts (the references), `systems` each system's
    outputs by name (e.g. {"base": [...], "tuned": [...]}), `training_texts` the training notes (None: no copying
    check), `reference_texts` general text for the distinctive terms (None: forge's data/reference/general.jsonl;
    []: no distinctive terms). Returns a JSON-serialisable dict:

    {"cut_chars": int, "seed", "folds", "resamples", "seconds": float, "summary": str, "notes": [str],
     "person": {"texts", "empty", "profile": profile(), "copying": CopyIndex.copying() | None, "loop_rate": float,
                "loops": int},
     "systems": {name: {"texts", "empty", "auc", "ci_low", "ci_high", "folds", "reason", "words": str,
                        "profile", "copying", "loop_rate", "loops"}},
     "distinctive": [{"term", "z", "count", "person_per_1k", "systems": {name: per_1k}}] | None}

    Texts are NFC-normalised and stripped; empty ones are counted and left out of the classifier. Every text is cut
    to `cut_chars` (default `cut_length` over the person and all systems) before the classifier sees it; profiles,
    copying and loops read the whole texts."""
    t0 = time.perf_counter()
    person_c = [clean(t) for t in person]
    systems_c = {name: [clean(t) for t in outs] for name, outs in systems.items()}
    kept_person = [t for t in person_c if t]
    kept = {name: [t for t in outs if t] for name, outs in systems_c.items()}
    chars = cut_chars if cut_chars is not None else cut_length([kept_person, *kept.values()])
    notes = []
    if chars < SHORT_CUT:
        notes.append(f"texts are cut to {chars} characters for the style classifier: it sees little text, so its AUC "
                     "says little")
    index = CopyIndex(training_texts) if training_texts is not None else None
    cut_person = [cut(t, chars) for t in kept_person]

    def about(texts: list[str]) -> dict:
        loop = loop_rate(texts)
        return {"texts": len(texts), "empty": sum(not t for t in texts), "profile": profile(texts),
                "copying": index.copying(texts) if index else None, "loop_rate": loop["rate"], "loops": loop["loops"]}

    cut_systems = {name: [cut(t, chars) for t in outs] for name, outs in kept.items()}
    everything = cut_person + [t for outs in cut_systems.values() for t in outs]
    try:  # counted once: rows the person's, then each system's
        counts = char_counts(everything) if everything else None
    except ValueError:  # no character n-gram anywhere: style_auc says why per system
        counts = None
    out_systems, row = {}, len(cut_person)
    for name, outs in systems_c.items():
        rows = list(range(len(cut_person))) + list(range(row, row + len(cut_systems[name])))
        row += len(cut_systems[name])
        r = style_auc(cut_person, cut_systems[name], folds, seed, resamples,
                      counts[rows] if counts is not None else None)
        out_systems[name] = {**about(outs), **r, "words": in_words(name, r)}

    distinctive = None
    ref = load_reference_texts() if reference_texts is None else reference_texts
    if ref:
        terms = distinctive_terms(kept_person, ref, top_terms)
        names = [t["term"] for t in terms]
        mine = usage_per_1k(kept_person, names)
        theirs = {name: usage_per_1k(outs, names) for name, outs in kept.items()}
        distinctive = [{**t, "person_per_1k": mine[t["term"]],
                        "systems": {name: theirs[name][t["term"]] for name in kept}} for t in terms]
    return {"cut_chars": chars, "seed": seed, "folds": folds, "resamples": resamples,
            "summary": summary(out_systems), "notes": notes, "person": about(person_c), "systems": out_systems,
            "distinctive": distinctive, "seconds": round(time.perf_counter() - t0, 3)}


# ---- a plain-text panel, for the report -----------------------------------------------------------------------------

def _fmt(x) -> str:
    return "–" if x is None else f"{x:g}" if isinstance(x, float) else str(x)


def markdown(result: dict) -> str:
    """The voice panel as markdown: the summary, a person / systems table of the profile, indistinguishability,
    copying and loops, and the distinctive-terms table."""
    names = list(result["systems"])
    rows = [result["person"], *(result["systems"][n] for n in names)]
    head = "| | you | " + " | ".join(names) + " |\n|---|" + "---|" * (len(names) + 1)

    def line(label: str, values) -> str:
        return f"| {label} | " + " | ".join(v if isinstance(v, str) else _fmt(v) for v in values) + " |"

    p = [r["profile"] for r in rows]
    lines = [f"**Voice.** {result['summary']}", "", head,
             line("style AUC (95 % interval)", ["–"] + [
                 f"{s['auc']:.2f} ({s['ci_low']:.2f}–{s['ci_high']:.2f})" if s["auc"] is not None else "–"
                 for s in rows[1:]]),
             line("words per answer", [x["words_per_answer"] for x in p]),
             line("words per sentence", [x["words_per_sentence"] for x in p]),
             line("first person / 100 words", [x["first_person_per_100_words"] for x in p]),
             line("contractions / 100 words", [x["contractions_per_100_words"] for x in p]),
             line("questions / 100 sentences", [x["questions_per_100_sentences"] for x in p])]
    for habit in MARKDOWN:
        lines.append(line(f"answers with {habit}", [f"{x['markdown'][habit]:.0%}" if x["markdown"][habit] is not None
                                                     else "–" for x in p]))
    if result["person"]["copying"] is not None:
        lines.append(line(f"copying {COPY_RUN}+ words from the notes (longest run)",
                          [f"{r['copying']['share']:.0%} ({r['copying']['longest_run']})"
                           if r["copying"]["share"] is not None else "–" for r in rows]))
    lines.append(line(f"loops ({LOOP_RUN}-word run {LOOP_TIMES}+ times)",
                      [f"{r['loop_rate']:.0%}" if r["loop_rate"] is not None else "–" for r in rows]))
    lines += ["", f"Texts cut to {result['cut_chars']} characters for the classifier."]
    lines += [f"Note: {n}." for n in result["notes"]]
    if result["distinctive"]:
        lines += ["", "Your most distinctive words and phrases (per 1,000 words):", "",
                  "| term | you | " + " | ".join(names) + " |", "|---|" + "---|" * (len(names) + 1)]
        lines += [f"| {t['term']} | {_fmt(t['person_per_1k'])} | " +
                  " | ".join(_fmt(t["systems"].get(n)) for n in names) + " |" for t in result["distinctive"]]
    return "\n".join(lines) + "\n"


def panel(result: dict | None, baseline_id: str | None = None) -> str | None:
    """The voice panel's markdown for a stored eval, or None: no judge ran, or it judged another baseline than the
    one now compared (a model's newest eval may be against another system). A judge that failed says why."""
    if not result or (baseline_id is not None and baseline_id not in (result.get("names") or {}).values()):
        return None
    if result.get("error"):
        return f"**Voice.** {result['summary']}\n"
    return markdown(result)

