"""New pending examples from any OpenAI-compatible endpoint (OpenRouter, OpenAI, llama.cpp / Ollama servers,
forge's own companion), through the official `openai` client.

Two modes: examples on a topic from a prompt template, and few-shot variations of approved examples. Replies are
requested as JSON under a json_schema where the endpoint supports it, else parsed from the text (fences allowed)
and validated; an unparseable reply is counted and retried, never stored. Retries back off exponentially with
jitter on 429 / 5xx / connection errors and honour Retry-After; a hard cap bounds requests and tokens. Each
reply's examples are stored as soon as it arrives, so Ctrl-C keeps everything already received. The API key is
read from the environment variable named in config and is never stored, logged or shown.
"""

from __future__ import annotations

import json
import os
import random
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from forge.config import Config
from forge.extract.common import record_to_messages
from forge.extract.jsonl import parse_json_text, records_of
from forge.store import Store, StoreError, content_hash
from forge.validate import validate_messages

TEMPLATES = {
    "pairs": ("Write {k} varied training examples for this task: {topic}\n"
              "Each example is an object with an \"input\" (what a user would write) and an \"output\" (the ideal "
              "answer). Vary wording, length and style. Reply with JSON: {{\"examples\": [{{\"input\": ..., "
              "\"output\": ...}}, ...]}}"),
    "variations": ("Here are examples of a task:\n{shots}\n\nWrite {k} new examples of the same task with different "
                   "wording and different details, keeping the output format exactly. Reply with JSON: "
                   "{{\"examples\": [{{\"input\": ..., \"output\": ...}}, ...]}}"),
}
SCHEMA = {"type": "object", "properties": {"examples": {"type": "array", "items": {
    "type": "object", "properties": {"input": {"type": "string"}, "output": {"type": "string"}},
    "required": ["input", "output"]}}}, "required": ["examples"]}


class GenerateError(StoreError):
    """Generation cannot start or go on; the message says what to set."""


@dataclass
class Report:
    added: int = 0
    duplicates: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_json(self) -> dict:
        return {"added": self.added, "duplicates": self.duplicates, "failed": self.failed,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _retryable(exc) -> bool:
    import openai

    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
        return True
    status = getattr(exc, "status_code", None)
    return status == 429 or (status is not None and status >= 500)


def parse_examples(text: str) -> list[list[dict]]:
    """Conversations in a model's reply (JSON, fenced JSON or JSON lines), each validated; [] when none."""
    out = []
    for value in parse_json_text(text or ""):
        for rec in records_of(value):
            msgs = record_to_messages(rec)
            if msgs and not validate_messages(msgs, max_length=10**9):
                out.append(msgs)
    return out


class Generator:
    def __init__(self, store: Store, config: Config, base_url: str, model: str, api_key: str | None = None,
                 progress: Callable[[Report], None] | None = None):
        import openai

        g = config.generate
        self.store, self.cfg, self.model = store, g, model
        key = api_key if api_key is not None else os.environ.get(g.api_key_env, "") or "not-needed"
        # Our own retry loop (Retry-After, jitter, counting): the client's is switched off.
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=g.timeout_s, max_retries=0)
        self.report = Report()
        self.progress = progress or (lambda r: None)
        self.structured = True  # json_schema until the endpoint says it does not support it
        self.stop = threading.Event()
        self.storing = threading.Lock()

    # ---- one request --------------------------------------------------------------------------------------
    def _budget_left(self) -> bool:
        r = self.report
        return (r.requests < self.cfg.max_requests
                and r.prompt_tokens + r.completion_tokens < self.cfg.max_total_tokens and not self.stop.is_set())

    def _call(self, prompt: str) -> str | None:
        import openai

        for attempt in range(self.cfg.max_retries + 1):
            with self.report.lock:
                if not self._budget_left():
                    return None
                self.report.requests += 1
            kwargs = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                      "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
            if self.structured:
                kwargs["response_format"] = {"type": "json_schema",
                                             "json_schema": {"name": "examples", "schema": SCHEMA}}
            try:
                resp = self.client.chat.completions.create(**kwargs)
            except openai.BadRequestError as e:
                if self.structured:
                    # Endpoints without structured output refuse the request (each in its own words): ask
                    # again without response_format and parse the JSON from the text instead.
                    self.structured = False
                    continue
                self._record_error(f"request refused: {e.status_code}")
                return None
            except Exception as e:  # noqa: BLE001 - anything the client raises is either retried or reported
                if not _retryable(e) or attempt == self.cfg.max_retries:
                    self._record_error(f"{type(e).__name__}: {getattr(e, 'status_code', '')}".strip(": "))
                    return None
                delay = _retry_after(e)
                if delay is None:
                    delay = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** attempt)
                    delay *= random.uniform(0.5, 1.0)  # full-ish jitter: clients that failed together spread out
                self.stop.wait(delay)
                continue
            usage = getattr(resp, "usage", None)
            with self.report.lock:
                self.report.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
                self.report.completion_tokens += getattr(usage, "completion_tokens", 0) or 0
            text = resp.choices[0].message.content if resp.choices else None
            if parse_examples(text or ""):
                return text
            with self.report.lock:  # unparseable: counted, retried, never stored
                self.report.failed += 1
        return None

    def _record_error(self, message: str) -> None:
        with self.report.lock:
            self.report.failed += 1
            self.report.errors.append(message)

    def _store(self, conversations: list[list[dict]], template_id: str) -> None:
        ts = datetime.now(timezone.utc).isoformat(timespec="seconds")
        items = [{"extract_key": f"llm:{self.model}:{content_hash(m)}", "source_kind": f"llm:{self.model}",
                  "source_ref": template_id, "tags": [], "messages": m,
                  "meta": {"template": template_id, "requested_at": ts}} for m in conversations]
        counts = self.store.ingest(items)
        with self.report.lock:
            self.report.added += counts["added"]
            self.report.duplicates += counts["duplicates"] + counts["unchanged"]
        self.progress(self.report)

    # ---- runs ---------------------------------------------------------------------------------------------
    def run(self, n: int, prompts: Callable[[], tuple[str, str]]) -> Report:
        """Request until `n` examples are added or the request/token cap is reached. `prompts()` gives
        (template id, prompt) for each request."""
        pool = ThreadPoolExecutor(max_workers=self.cfg.concurrency)
        pending: set = set()
        try:
            while True:
                while len(pending) < self.cfg.concurrency and self.report.added < n and self._budget_left():
                    template_id, prompt = prompts()
                    pending.add(pool.submit(self._one, template_id, prompt, n))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    fut.result()
        finally:  # Ctrl-C included: what was stored stays; waits between retries end at once
            self.stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
        return self.report

    def _one(self, template_id: str, prompt: str, n: int) -> None:
        text = self._call(prompt)
        if text is None:
            return
        convs = parse_examples(text)
        with self.storing:  # one reply stored at a time, so concurrent replies never overshoot n
            room = max(0, n - self.report.added)
            if room:
                self._store(convs[:room], template_id)


def topic_prompts(topic: str, per_request: int, template: str = "pairs") -> Callable[[], tuple[str, str]]:
    text = TEMPLATES.get(template, template)
    return lambda: (template if template in TEMPLATES else "custom", text.format(k=per_request, topic=topic, shots=""))


def variation_prompts(store: Store, per_request: int, shots: int = 3, seed: int = 0) -> Callable[[], tuple[str, str]]:
    approved = store.examples(status="approved")
    if not approved:
        raise GenerateError("--from-approved needs approved examples: approve some first")
    rng = random.Random(seed)

    def make() -> tuple[str, str]:
        picked = rng.sample(approved, min(shots, len(approved)))
        lines = [json.dumps({"input": next(m["content"] for m in e.messages if m["role"] == "user"),
                             "output": e.messages[-1]["content"]}, ensure_ascii=False) for e in picked]
        return "variations", TEMPLATES["variations"].format(k=per_request, shots="\n".join(lines), topic="")

    return make


def generate(store: Store, config: Config, base_url: str, n: int, model: str | None = None,
             template: str = "pairs", topic: str | None = None, from_approved: bool = False,
             progress: Callable[[Report], None] | None = None) -> Report:
    g = config.generate
    model = model or g.model
    if not model:
        raise GenerateError("no model: pass --model or set generate.model in config.json")
    gen = Generator(store, config, base_url, model, progress=progress)
    if from_approved:
        prompts = variation_prompts(store, g.per_request)
    else:
        if not topic and template == "pairs":
            raise GenerateError("say what to generate: --topic \"...\" (or --from-approved for variations)")
        prompts = topic_prompts(topic or "", g.per_request, template)
    return gen.run(n, prompts)
