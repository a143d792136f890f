"""One OpenAI-compatible endpoint under a budget, shared by every job that asks an LLM for text (`forge generate`,
`forge backtranslate`).

The official `openai` client with its own retries switched off: forge's loop retries 429, 5xx, timeouts and
connection errors with exponential backoff and jitter, honours Retry-After, and counts every request and token
against hard caps, so a run never spends more than its config allows. The API key comes from the environment
variable named in config and is never stored, logged or shown.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Usage:
    """What a run spent and what went wrong; `lock` guards every counter (requests run in threads)."""

    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Reply:
    text: str
    finish_reason: str | None


class CallFailed(Exception):
    """A request that failed for good (retries spent, or refused); `unreachable` when nothing answered at all."""

    def __init__(self, message: str, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def retryable(exc) -> bool:
    import openai

    if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
        return True
    status = getattr(exc, "status_code", None)
    return status == 429 or (status is not None and status >= 500)


def unreachable(exc) -> bool:
    """Nothing answered (refused, no route, DNS), as opposed to a server that answered slowly or with an error."""
    import openai

    return isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError)


def api_key(env_name: str, given: str | None = None) -> str | None:
    """The key to send: the one given, else the named environment variable's; None when neither is set."""
    return given if given is not None else (os.environ.get(env_name) or None)


class Endpoint:
    """Chat completions from one model at one endpoint. `policy` is a config section with api_key_env, timeout_s,
    max_retries, backoff_base_s and backoff_max_s (config.generate); the caps default to its max_requests and
    max_total_tokens. Counts go into `usage`; `stop` ends every wait between retries at once."""

    def __init__(self, base_url: str, model: str, policy, usage: Usage, api_key: str | None = None,
                 max_requests: int | None = None, max_total_tokens: int | None = None):
        import openai

        self.model, self.policy, self.usage = model, policy, usage
        self.max_requests = max_requests if max_requests is not None else policy.max_requests
        self.max_total_tokens = max_total_tokens if max_total_tokens is not None else policy.max_total_tokens
        key = api_key if api_key is not None else os.environ.get(policy.api_key_env, "") or "not-needed"
        # Our own retry loop (Retry-After, jitter, counting): the client's is switched off.
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=policy.timeout_s, max_retries=0)
        self.stop = threading.Event()

    def budget_left(self) -> bool:
        u = self.usage
        return u.requests < self.max_requests and u.tokens < self.max_total_tokens and not self.stop.is_set()

    def call(self, request: Callable[[], dict], accept: Callable[[str], bool] | None = None,
             refused: Callable[[Exception], bool] | None = None) -> Reply | None:
        """One chat completion. `request()` gives the keyword arguments (model is added) for each attempt;
        a reply that `accept` rejects is counted in usage.failed and asked again; `refused(error)` may answer
        True to a 400 to have the request asked again (changed). Returns None when the caps or `stop` end it
        before an answer; raises CallFailed when the retries are spent or the endpoint refuses."""
        import openai

        p = self.policy
        for attempt in range(p.max_retries + 1):
            with self.usage.lock:
                if not self.budget_left():
                    return None
                self.usage.requests += 1
            try:
                resp = self.client.chat.completions.create(**{"model": self.model, **request()})
            except openai.BadRequestError as e:
                if refused is not None and refused(e):
                    continue
                raise CallFailed(f"request refused: {e.status_code}") from None
            except Exception as e:  # noqa: BLE001 - anything the client raises is either retried or reported
                if not retryable(e) or attempt == p.max_retries:
                    raise CallFailed(f"{type(e).__name__}: {getattr(e, 'status_code', '')}".strip(": "),
                                     unreachable(e)) from None
                delay = retry_after(e)
                if delay is None:
                    delay = min(p.backoff_max_s, p.backoff_base_s * 2 ** attempt)
                    delay *= random.uniform(0.5, 1.0)  # full-ish jitter: clients that failed together spread out
                self.stop.wait(delay)
                continue
            usage = getattr(resp, "usage", None)
            with self.usage.lock:
                self.usage.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
                self.usage.completion_tokens += getattr(usage, "completion_tokens", 0) or 0
            choice = resp.choices[0] if resp.choices else None
            text = (choice.message.content if choice is not None else None) or ""
            if accept is None or accept(text):
                return Reply(text, getattr(choice, "finish_reason", None))
            with self.usage.lock:  # a reply the caller cannot use: counted, asked again, never stored
                self.usage.failed += 1
        return None
