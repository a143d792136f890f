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
import random
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from forge.config import Config
from forge.data.extract.common import record_to_messages
from forge.data.extract.jsonl import parse_json_text, records_of
from forge.data.validate import validate_messages
from forge.llm.endpoint import CallFailed, Endpoint, Usage
from forge.store import Store, StoreError, content_hash

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
class Report(Usage):
    added: int = 0
    duplicates: int = 0
    model: str = ""
    model_how: str = ""

    def to_json(self) -> dict:
        return {"added": self.added, "duplicates": self.duplicates, "failed": self.failed,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "model": self.model, "model_how": self.model_how}


def resolve_model(base_url: str, model: str | None, api_key: str | None = None,
                  timeout_s: float = 10.0) -> tuple[str, str]:
    """(model, how it was chosen). A given name is used as is (how = ""); otherwise the first model the endpoint
    lists at GET /v1/models, the way local servers (the companion, llama-server, Ollama) name what they serve."""
    if model:
        return model, ""
    import httpx

    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        r = httpx.get(url, headers=headers, timeout=timeout_s)
        r.raise_for_status()
        listed = [m.get("id") for m in (r.json().get("data") or []) if isinstance(m, dict) and m.get("id")]
    except httpx.HTTPStatusError as e:
        raise GenerateError(f"no --model given and {url} answered {e.response.status_code}: pass --model "
                            f"(or set it in config.json)") from None
    except (httpx.HTTPError, ValueError, AttributeError) as e:
        raise GenerateError(f"no --model given and {url} could not be read ({type(e).__name__}): pass --model") \
            from None
    if not listed:
        raise GenerateError(f"no --model given and {url} lists no model: pass --model")
    return listed[0], f"first of {len(listed)} listed at {url}" if len(listed) > 1 else f"the one listed at {url}"


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
        g = config.generate
        self.store, self.cfg, self.model = store, g, model
        self.report = Report()
        self.endpoint = Endpoint(base_url, model, g, self.report, api_key)
        self.progress = progress or (lambda r: None)
        self.structured = True  # json_schema until the endpoint says it does not support it
        self.stop = self.endpoint.stop
        self.storing = threading.Lock()

    # ---- one request --------------------------------------------------------------------------------------
    def _budget_left(self) -> bool:
        return self.endpoint.budget_left()

    def _request(self, prompt: str) -> dict:
        kwargs = {"messages": [{"role": "user", "content": prompt}],
                  "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}
        if self.structured:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": "examples", "schema": SCHEMA}}
        return kwargs

    def _refused(self, error: Exception) -> bool:
        if not self.structured:
            return False
        # Endpoints without structured output refuse the request (each in its own words): ask again without
        # response_format and parse the JSON from the text instead.
        self.structured = False
        return True

    def _call(self, prompt: str) -> str | None:
        try:  # unparseable replies are counted and asked again by the endpoint, never stored
            reply = self.endpoint.call(lambda: self._request(prompt), lambda text: bool(parse_examples(text)),
                                       self._refused)
        except CallFailed as e:
            self._record_error(str(e))
            return None
        return reply.text if reply is not None else None

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
    from forge.llm.endpoint import api_key as key_from_env

    model, how = resolve_model(base_url, model or g.model, key_from_env(g.api_key_env), min(g.timeout_s, 10.0))
    gen = Generator(store, config, base_url, model, progress=progress)
    gen.report.model, gen.report.model_how = model, how
    if from_approved:
        prompts = variation_prompts(store, g.per_request)
    else:
        if not topic and template == "pairs":
            raise GenerateError("say what to generate: --topic \"...\" (or --from-approved for variations)")
        prompts = topic_prompts(topic or "", g.per_request, template)
    return gen.run(n, prompts)
