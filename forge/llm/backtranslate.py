"""Prompts written for the note (instruction backtranslation, Li et al. 2023): for every Obsidian example whose user
turn is still the extraction template ("Tell me about {title}."), an LLM at any OpenAI-compatible endpoint (the
companion serving the bundled model included) writes the request the note answers.

The note stays the assistant turn byte for byte. The new prompt replaces the template as one decision in the log
(action `backtranslate`, provenance in its reason), so the example stays pending, shows as edited in Curate with
the model that wrote it, and `forge undo` brings the template back. Examples a person decided or edited are never
touched; each finished example is committed as it completes, so a run stopped by Ctrl-C or a cap goes on where it
stopped (the done ones no longer carry the template). Nothing here runs unless the user asks for it: offline, the
template stays.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import urlsplit

from forge.config import BACKTRANSLATE_INSTRUCTION, Config, ObsidianConfig
from forge.llm.endpoint import CallFailed, Usage
from forge.store import Example, Store, StoreError

ACTION = "backtranslate"
SKIP_REASONS = {
    "decided": "approved or rejected",
    "edited": "edited by a person",
    "own-prompt": "their own prompt (frontmatter prompt:)",
    "not-template": "a prompt that is not the template",
    "shape": "not one question and one answer",
    "changed": "changed while the run went on",
}
WHOLE, SECTION = "extract.obsidian.prompt_template", "extract.obsidian.section_prompt_template"
_PART_RE = re.compile(r" \(part \d+ of \d+\)(?=\.?$)")


class BacktranslateError(StoreError):
    """The run cannot start or go on (endpoint unreachable, bad option); the message says what to do."""


def companion_url(config: Config) -> str:
    """The local companion's OpenAI-compatible base URL (`forge serve`)."""
    return f"http://127.0.0.1:{config.companion.port}/v1"


def template_id(instruction: str) -> str:
    """A short name for the instruction a run used: `default`, or `custom:<hash>` for one set in config."""
    if instruction == BACKTRANSLATE_INSTRUCTION:
        return "default"
    import hashlib

    return "custom:" + hashlib.sha256(instruction.encode("utf-8")).hexdigest()[:8]


# ---- which examples ------------------------------------------------------------------------------------------
def _turns(ex: Example) -> tuple[int, int] | None:
    """(user index, assistant index) of a one-question, one-answer example; None for any other shape."""
    roles = [m["role"] for m in ex.messages]
    body = [i for i, r in enumerate(roles) if r != "system"]
    if len(body) != 2 or roles[body[0]] != "user" or roles[body[1]] != "assistant":
        return None
    return body[0], body[1]


def template_source(ex: Example, cfg: ObsidianConfig) -> str | None:
    """Which extraction template the example's user turn still is (`extract.obsidian.prompt_template` or
    `...section_prompt_template`), or None. Extractions record `meta.prompt_source`; for examples stored before
    that, the templates are rendered again from the title, heading and tags and compared."""
    if ex.source_kind != "obsidian" or _turns(ex) is None:
        return None
    if ex.meta.get("prompt_source") == "frontmatter":
        return None
    from forge.data.extract.obsidian import _fill
    from forge.data.validate import normalize_text

    user = ex.messages[_turns(ex)[0]]["content"]
    title = str(ex.meta.get("title") or ex.heading or "")
    tags = ", ".join(ex.tags)
    whole = normalize_text(_fill(cfg.prompt_template, title=title, heading=title, tags=tags))
    section = normalize_text(_fill(cfg.section_prompt_template, title=title, heading=ex.heading or title, tags=tags))
    stem = _PART_RE.sub("", user)  # a long note's parts: "Tell me about X (part 2 of 3)."
    if stem == section and section != whole:
        return SECTION
    if stem == whole:
        return WHOLE
    if ex.meta.get("prompt_source") == "template":  # the template as it was when extracted (config changed since)
        return SECTION if ex.meta.get("heading_path") else WHOLE
    return None


def candidates(store: Store, cfg: ObsidianConfig, source: str | None = None) -> tuple[list[tuple[Example, str]], Counter]:
    """(example, template id) for every Obsidian example that still carries the template prompt, in id order, and
    a count per SKIP_REASONS key of those left alone. `source` keeps examples whose source (`obsidian:PATH`) or
    note path starts with it."""
    todo, skipped = [], Counter()
    ids = store.ids(source=source) if source else store.ids()
    for start in range(0, len(ids), 500):
        for ex in store.examples(ids[start:start + 500]):
            if ex.source_kind != "obsidian":
                continue
            if source and not (ex.source.startswith(source) or ex.source_ref.startswith(source)):
                continue
            if ex.status != "pending":
                skipped["decided"] += 1
            elif ex.edited:
                skipped["edited"] += 1
            elif _turns(ex) is None:
                skipped["shape"] += 1
            elif ex.meta.get("prompt_source") == "frontmatter":
                skipped["own-prompt"] += 1
            else:
                which = template_source(ex, cfg)
                if which is None:
                    skipped["not-template"] += 1
                else:
                    todo.append((ex, which))
    return todo, skipped


# ---- the reply -----------------------------------------------------------------------------------------------
_LABEL_RE = re.compile(r"^(?:[*_#>]+\s*)?(?:question|request|instruction|prompt|query|user(?:\s+request)?|q)"
                       r"(?:\s*\d+)?\s*[:：]\s*(?:[*_]+\s*)?", re.IGNORECASE)
_ANSWER_RE = re.compile(r"^[ \t]*(?:[*_#>]+\s*)?(?:answer|response|assistant|output|note(?:\s*\([^)\n]*\))?|a)"
                        r"\s*[:：]", re.IGNORECASE | re.MULTILINE)
_LIST_RE = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")
_PAIRS = {'"': '"', "'": "'", "“": "”", "‘": "’", "«": "»", "„": "“", "`": "`", "**": "**", "*": "*", "_": "_"}
_WORD_RE = re.compile(r"\w+")


def copies(reply: str, note: str, n: int = 5) -> bool:
    """Whether the reply mostly repeats the note: most of its runs of n words appear in the note (a short reply
    counts only when it is the whole note)."""
    words = _WORD_RE.findall(reply.lower())
    note_words = _WORD_RE.findall(note.lower())
    if len(words) < n + 2:
        return bool(words) and words == note_words
    grams = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
    note_grams = {tuple(note_words[i:i + n]) for i in range(len(note_words) - n + 1)}
    return len(grams & note_grams) >= 0.6 * len(grams)


def clean_reply(text: str, note: str, template: str, max_chars: int,
                cut_off: bool = False) -> tuple[str | None, str | None]:
    """(request, None) for a usable reply, else (None, why). Keeps the first paragraph, drops what follows an
    `Answer:` line, `Question:`-style labels, list markers and wrapping quotes; refuses an empty reply, several
    requests, one longer than max_chars (or cut off by max_tokens), the template itself, or a copy of the note."""
    from forge.data.validate import normalize_text

    t = (text or "").strip()
    if t.startswith("```"):
        t = re.sub(r"^```[^\n]*\n?|\n?```\s*$", "", t).strip()
    shortened = False
    answer = next((m for m in _ANSWER_RE.finditer(t) if m.start() > 0), None)
    if answer:
        t, shortened = t[:answer.start()].strip(), True
    paragraphs = [p for p in re.split(r"\n\s*\n", t) if p.strip()]
    if len(paragraphs) > 1:
        shortened = True
    lines = [ln.strip() for ln in (paragraphs[0] if paragraphs else "").splitlines() if ln.strip()]
    if sum(1 for ln in lines if _LIST_RE.match(ln)) > 1:
        return None, "the reply lists several requests, not one"
    t = " ".join(lines)
    for _ in range(2):
        t = _LIST_RE.sub("", _LABEL_RE.sub("", t, count=1), count=1).strip()
    changed = True
    while changed and len(t) >= 2:
        changed = False
        for left, right in _PAIRS.items():
            if len(t) > 2 * len(left) and t.startswith(left) and t.endswith(right):
                t, changed = t[len(left):-len(right)].strip(), True
    t = normalize_text(t.strip('"“”„«»`').strip())
    if not t:
        return None, "the reply is empty"
    if len(t) > max_chars or (cut_off and not shortened):
        return None, (f"the reply is too long ({len(t)} characters{', cut off at max_tokens' if cut_off else ''}; "
                      f"backtranslate.max_prompt_chars is {max_chars})")
    if t.casefold() == template.casefold():
        return None, "the reply repeats the template prompt"
    if copies(t, note):
        return None, "the reply copies the note instead of asking for it"
    return t, None


# ---- provenance ----------------------------------------------------------------------------------------------
def provenance(store: Store, ex: Example) -> dict | None:
    """The backtranslation that wrote this example's current prompt ({model, host, template, replaced, at}), or
    None when its prompt was not written that way (or a person edited it since, or it was undone)."""
    if not ex.edited or ex.source_kind != "obsidian":
        return None
    d = store.last_decision(ex.id, ACTION)
    if d is None or not d["after"] or d["after"]["messages"] != ex.messages:
        return None
    try:
        return json.loads(d["reason"] or "{}")
    except ValueError:
        return None


def describe_provenance(p: dict) -> str:
    return (f"prompt written by {p.get('model', '?')} at {p.get('host', '?')} · instruction {p.get('template', '?')}"
            f" · replaced {str(p.get('replaced', '?')).rsplit('.', 1)[-1]} · {str(p.get('at', ''))[:16]}")


# ---- the run -------------------------------------------------------------------------------------------------
@dataclass
class Report(Usage):
    done: int = 0
    total: int = 0  # examples this run set out to do (after --limit)
    eligible: int = 0  # examples carrying the template prompt when the run started
    skipped: Counter = field(default_factory=Counter)
    model: str = ""
    model_how: str = ""
    base_url: str = ""
    interrupted: bool = False
    error: str | None = None

    @property
    def remaining(self) -> int:
        """Examples that still carry the template prompt: a re-run goes on with them."""
        return max(0, self.eligible - self.done - self.skipped.get("changed", 0))

    def to_json(self) -> dict:
        return {"done": self.done, "failed": self.failed, "skipped": sum(self.skipped.values()),
                "skipped_by_reason": dict(self.skipped), "remaining": self.remaining,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "requests": self.requests, "model": self.model, "model_how": self.model_how,
                "base_url": self.base_url, "interrupted": self.interrupted, "error": self.error,
                "errors": list(self.errors)}


class Backtranslator:
    def __init__(self, store: Store, config: Config, base_url: str, model: str, report: Report,
                 api_key: str | None = None):
        from forge.llm.endpoint import Endpoint

        self.store, self.cfg, self.report = store, config.backtranslate, report
        self.host = urlsplit(base_url).netloc or base_url
        self.tid = template_id(self.cfg.instruction)
        self.endpoint = Endpoint(base_url, model, config.generate, report, api_key,
                                 max_requests=self.cfg.max_requests, max_total_tokens=self.cfg.max_total_tokens)
        self.concurrency = config.generate.concurrency

    def _fail(self, ex: Example, why: str) -> None:
        with self.report.lock:
            self.report.failed += 1
            self.report.errors.append(f"#{ex.id} {ex.note_path or ex.source_ref}: {why}")

    def one(self, ex: Example, replaced: str) -> bool | None:
        """Ask for ex's request and commit it. True done, False failed, None not asked (caps reached or stopped).
        Raises CallFailed when the endpoint cannot be reached at all."""
        ui, ai = _turns(ex)
        note, template = ex.messages[ai]["content"], ex.messages[ui]["content"]
        sent = note[:self.cfg.max_note_chars]
        title = str(ex.meta.get("title") or ex.heading or ex.note_path or "")
        prompt = self.cfg.instruction.replace("{title}", title).replace("{note}", sent)
        try:
            reply = self.endpoint.call(lambda: {"messages": [{"role": "user", "content": prompt}],
                                                "temperature": self.cfg.temperature,
                                                "max_tokens": self.cfg.max_tokens})
        except CallFailed as e:
            if e.unreachable:
                raise
            self._fail(ex, str(e))
            return False
        if reply is None:
            return None
        request, why = clean_reply(reply.text, sent, template, self.cfg.max_prompt_chars,
                                   cut_off=reply.finish_reason == "length")
        if request is None:
            self._fail(ex, why)
            return False
        messages = [dict(m) for m in ex.messages]
        messages[ui] = {**messages[ui], "content": request}
        prov = {"model": self.endpoint.model, "host": self.host, "template": self.tid, "replaced": replaced,
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:  # only if nobody touched the example since it was read (another window, another process)
            self.store.decide(ACTION, {ex.id: {"messages": messages}}, reason=json.dumps(prov),
                              expect={ex.id: {"status": "pending", "edited": False, "messages": ex.messages}})
        except StoreError:
            with self.report.lock:
                self.report.skipped["changed"] += 1
            return None
        with self.report.lock:
            self.report.done += 1
        return True

    def run(self, todo: list[tuple[Example, str]], progress: Callable[[Report], None]) -> Report:
        """Work through `todo`, `concurrency` requests at a time, calling progress(report) on this thread after each
        example. Ctrl-C (or a KeyboardInterrupt from progress) stops it: what was committed stays."""
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        pending: set = set()
        queue = iter(todo)
        try:
            while True:
                while len(pending) < self.concurrency and self.endpoint.budget_left():
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    pending.add(pool.submit(self.one, *nxt))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    try:
                        fut.result()
                    except CallFailed as e:
                        self._unreachable(str(e))
                        pending.clear()
                progress(self.report)
                if self.report.error:
                    break
        except KeyboardInterrupt:
            self.report.interrupted = True
        finally:  # waits between retries end at once; requests in flight are not waited for
            self.endpoint.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
        return self.report

    def _unreachable(self, detail: str) -> None:
        message = (f"cannot reach {self.report.base_url} ({detail}): is the server running? Start the companion "
                   f"with `forge serve`, or pass --base-url")
        if not self.report.done:
            raise BacktranslateError(message)
        self.report.error = message + "; re-run to go on with the notes left"


def _preflight(base_url: str, timeout_s: float) -> None:
    """One GET before any work, so an endpoint that is not there is said in a line, not after every retry."""
    import httpx

    try:
        httpx.get(base_url.rstrip("/") + "/models", timeout=min(timeout_s, 10.0))
    except httpx.TransportError as e:
        if isinstance(e, httpx.TimeoutException):
            return  # slow to answer is not absent: the requests' own retries deal with it
        raise BacktranslateError(f"cannot reach {base_url} ({type(e).__name__}): is the server running? Start the "
                                 f"companion with `forge serve`, or pass --base-url") from None


def backtranslate(store: Store, config: Config, base_url: str | None = None, model: str | None = None,
                  source: str | None = None, limit: int | None = None,
                  progress: Callable[[Report], None] | None = None, api_key: str | None = None) -> Report:
    """Write prompts for up to `limit` templated notes (all when None) at `base_url` (default: the local companion).
    The model is `model`, else config backtranslate.model, else the first one the endpoint lists."""
    from forge.llm.endpoint import api_key as key_from_env

    if limit is not None and limit < 0:
        raise BacktranslateError("--limit: give 0 or more examples")
    base_url = (base_url or companion_url(config)).rstrip("/")
    if not base_url.startswith(("http://", "https://")):
        raise BacktranslateError(f"--base-url {base_url!r}: give the endpoint's http(s) address, e.g. "
                                 f"{companion_url(config)}")
    todo, skipped = candidates(store, config.extract.obsidian, source)
    eligible = len(todo)
    if limit is not None:
        todo = todo[:limit]
    report = Report(total=len(todo), eligible=eligible, skipped=skipped, base_url=base_url)
    if not todo:
        return report  # nothing to write: nothing calls out
    key = key_from_env(config.generate.api_key_env, api_key)
    _preflight(base_url, config.generate.timeout_s)
    from forge.llm.generate import resolve_model

    report.model, report.model_how = resolve_model(base_url, model or config.backtranslate.model, key)
    bt = Backtranslator(store, config, base_url, report.model, report, key)
    return bt.run(todo, progress or (lambda r: None))
