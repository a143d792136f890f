"""Typed configuration: config.json validated by pydantic, overridden by FORGE_* environment variables.

Unknown or mistyped keys are rejected with a message naming the key and the file, so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forge import REPO_ROOT  # re-exported: forge.config.REPO_ROOT
from forge.errors import ForgeError, format_validation_error

DEFAULT_CONFIG_PATH = REPO_ROOT / "config.json"
ENV_PREFIX = "FORGE_"


class ConfigError(ForgeError):
    """A config file or override is invalid; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class ObsidianConfig(_Section):
    include_tags: list[str] = ["reflection", "decision", "learning"]
    """A note becomes an example when it carries one of these tags (or a nested tag under one, e.g.
    `reflection/daily`). An empty list takes every note."""

    prompt_template: str = "Tell me about {title}."
    """User turn for notes without a frontmatter `prompt:`. Placeholders: {title}, {heading}, {tags}."""

    section_prompt_template: str = "Tell me about {title}: {heading}."
    """User turn for a section when long notes are split by H2."""

    include_folders: list[str] = []
    """Only notes inside these vault folders (paths relative to the vault, e.g. `Journal` or `Work/Decisions`).
    Empty takes every folder. `forge extract obsidian --folder` sets it for one vault (remembered)."""

    exclude_folders: list[str] = []
    """Notes inside these vault folders are left out (reported as filtered)."""

    max_tokens: int | None = Field(default=1024, gt=64)
    """A note longer than this many tokens (base model's tokenizer, chat template included) is split at its
    headings, then paragraphs, into examples that fit; short sections merge with their neighbours and no text is
    dropped. Keep it at or below the longest sequence you train on. Null never splits."""

    split_h2_over_words: int | None = None
    """Legacy: split notes longer than this many words into one example per H2 section (instead of the
    token-based split above); null leaves it to `max_tokens`."""

    templates_folder: str = "templates"
    """Vault folder holding Obsidian templates; never extracted."""

    skip_folders: list[str] = [".obsidian", ".trash", "attachments", "assets"]
    """Vault folders never read (settings, trash, attachments)."""


class CsvConfig(_Section):
    prompt_column: str | None = None
    """Column holding the user turn. Null detects common pairs (prompt/response, instruction/input/output,
    input/output, question/answer, transcript/summary)."""

    response_column: str | None = None
    """Column holding the assistant turn. Null detects it with the prompt column."""

    system_column: str | None = None
    """Optional column holding a system prompt."""

    prompt_template: str = "{prompt}"
    """How the prompt column becomes the user turn, e.g. "Summarise this session:\\n\\n{prompt}"."""


class ExtractConfig(_Section):
    obsidian: ObsidianConfig = ObsidianConfig()
    """Obsidian vault extraction."""

    csv: CsvConfig = CsvConfig()
    """CSV extraction."""

    max_file_bytes: int = Field(default=20_000_000, gt=0)
    """Files larger than this are skipped with a reason; JSONL and CSV are streamed, so this bounds one note
    or one whole CSV/JSONL file."""

    max_line_bytes: int = Field(default=2_000_000, gt=0)
    """A single JSONL line or CSV field larger than this is skipped with its line number."""


class ValidationConfig(_Section):
    max_tokens: int = Field(default=2048, gt=0)
    """Longest conversation allowed for approval, in tokens when a tokenizer is configured, else in words."""

    tokenizer: str | None = None
    """Path of a local HF tokenizer used to count tokens; null counts words (no model load)."""


class DatasetConfig(_Section):
    val: float = Field(default=0.1, ge=0, lt=1)
    """Fraction of approved examples held out for validation."""

    test: float = Field(default=0.1, ge=0, lt=1)
    """Fraction of approved examples held out for testing (evaluation)."""

    seed: int = 42
    """Seed for the split; the same data and seed always give the same split."""

    format: Literal["chat", "alpaca"] = "chat"
    """chat writes {"messages": [...]} lines; alpaca writes {"instruction","input","output"} lines."""


class DedupConfig(_Section):
    model: str = "all-MiniLM-L6-v2"
    """Sentence-transformers model: `all-MiniLM-L6-v2` (bundled offline) or a local model directory."""

    text: Literal["conversation", "user"] = "conversation"
    """Which text is embedded: the whole conversation or the user turns only."""

    leak_text: Literal["conversation", "user"] = "conversation"
    """Which text the leakage check (dataset export, `forge eval`) compares between held-out and training items:
    the whole conversation (default: a paraphrased answer leaks too) or the user turns only, for data where every
    example shares a long system prompt or answer format that alone would make all of them look alike."""

    threshold: float = Field(default=0.8, gt=0, le=1)
    """Cosine similarity at or above which two examples are near-duplicates. 0.8 measured precision 1.0 and
    recall 0.96 on tests/data/dedup_labelled.py with the bundled model (related-but-different examples peaked
    at 0.77)."""

    batch_size: int = Field(default=64, gt=0)
    """Embedding batch size."""

    ann_min_size: int = Field(default=20_000, gt=0)
    """From this many examples on, pairs are searched within the cells of a faiss k-means partition (each example
    in its 3 nearest cells) instead of scoring every pair."""


class GenerateConfig(_Section):
    model: str | None = None
    """Model name sent to the endpoint (e.g. google/gemini-2.5-flash on OpenRouter); --model overrides it."""

    api_key_env: str = "OPENROUTER_API_KEY"
    """Name of the environment variable holding the API key. The key itself is never stored or shown."""

    per_request: int = Field(default=5, gt=0, le=50)
    """Examples asked for in each request."""

    concurrency: int = Field(default=4, gt=0, le=64)
    """Requests in flight at once."""

    timeout_s: float = Field(default=60, gt=0)
    """Per-request timeout in seconds."""

    max_retries: int = Field(default=5, ge=0)
    """Retries per request on 429, 5xx, timeouts and connection errors (exponential backoff with jitter)."""

    backoff_base_s: float = Field(default=1.0, gt=0)
    """First retry delay; doubles each retry (a Retry-After header wins)."""

    backoff_max_s: float = Field(default=30.0, gt=0)
    """Longest delay between retries."""

    max_requests: int = Field(default=200, gt=0)
    """Hard cap on requests per `forge generate`, retries included."""

    max_total_tokens: int = Field(default=500_000, gt=0)
    """Hard cap on prompt + completion tokens per `forge generate` (from the replies' usage)."""

    max_tokens: int = Field(default=1024, gt=0)
    """max_tokens sent with each request."""

    temperature: float = Field(default=0.9, ge=0, le=2)
    """Sampling temperature; higher gives more varied examples."""


BACKTRANSLATE_INSTRUCTION = (
    "Write the question each note answers.\n\n"
    "Note (Tomatoes): Water the tomatoes every morning and feed them once a week.\n"
    "Question: How should I look after my tomato plants?\n\n"
    "Note ({title}): {note}\n"
    "Question:")


class BacktranslateConfig(_Section):
    """`forge backtranslate`: an LLM writes the request each note answers, in place of the template prompt. How to
    reach the endpoint (API key variable, timeout, retries, backoff, concurrency) is `generate`'s: one endpoint,
    one policy. The caps and sampling are this section's, because a run makes one short request per note."""

    model: str | None = None
    """Model name at the endpoint; --model overrides it. Null: the first model the endpoint lists at
    GET /v1/models (for the companion, the model it serves)."""

    instruction: str = BACKTRANSLATE_INSTRUCTION
    """What the model is asked for each note. Placeholders: {note} (the note's text, cut to max_note_chars) and
    {title}. The default shows one worked example, which even the bundled 135M model follows."""

    max_requests: int = Field(default=1000, gt=0)
    """Hard cap on requests per run, retries included. A later run goes on with the notes left."""

    max_total_tokens: int = Field(default=2_000_000, gt=0)
    """Hard cap on prompt + completion tokens per run (from the replies' usage)."""

    max_tokens: int = Field(default=96, gt=0)
    """max_tokens sent with each request: room for one request, not an essay."""

    temperature: float = Field(default=0.3, ge=0, le=2)
    """Sampling temperature; low keeps the request close to what the note says."""

    max_note_chars: int = Field(default=6000, gt=0)
    """At most this many characters of a note are sent. Only the request is cut: the example keeps its whole
    text."""

    max_prompt_chars: int = Field(default=400, gt=0)
    """A written request longer than this is refused (counted as failed; the example keeps its template)."""


class TaskConfig(_Section):
    system: str
    """System prompt telling the model what the task is; the user turn is the request's `text`."""

    schema_: dict = Field(alias="schema")
    """JSON schema the reply must follow: generation is constrained to it by a llama.cpp grammar and the result is
    validated against it before it is returned."""

    max_tokens: int = Field(default=256, gt=0)
    """Longest reply in tokens."""

    temperature: float = Field(default=0.0, ge=0, le=2)
    """Sampling temperature; 0 is greedy (the same text gives the same answer)."""


CONVERT_TASK = {
    "system": ("Convert the user's request into JSON with the intent (a short snake_case verb phrase) and the "
               "entities it mentions, each with a type and the exact text."),
    "schema": {"type": "object", "properties": {
        "intent": {"type": "string", "maxLength": 64},
        "entities": {"type": "array", "maxItems": 8, "items": {"type": "object", "properties": {
            "type": {"type": "string", "maxLength": 32}, "value": {"type": "string", "maxLength": 128}},
            "required": ["type", "value"]}}},
        "required": ["intent", "entities"]},
    "max_tokens": 256,
}


class BackendConfig(_Section):
    """What answers the companion's requests: its own llama.cpp worker, or an OpenAI-compatible engine elsewhere."""

    kind: Literal["llama.cpp", "openai"] = "llama.cpp"
    """llama.cpp: a worker process on this machine runs a GGUF from forge's registry. openai: every request goes to
    the engine at base_url (vLLM, llama-server, Ollama, SGLang, another `forge serve`); forge's companion keeps its
    queue, health, task endpoints and error shapes in front of it."""

    base_url: str | None = None
    """The engine's OpenAI-compatible address ending in /v1, e.g. http://127.0.0.1:8000/v1 (kind openai)."""

    model: str | None = None
    """The engine's model to serve at start (kind openai). Null: the first it lists at GET /v1/models. A swap picks
    another model the engine lists (for engines that load on demand, such as Ollama, that is their own load)."""

    api_key_env: str | None = None
    """Environment variable holding the engine's API key, if it wants one. The key is never stored or logged."""

    admin_token_env: str | None = None
    """For an engine that serves one model at a time and says which (another `forge serve`): the environment
    variable holding its admin token, so a swap here swaps it there (POST /admin/reload-model). Without it such a
    swap is refused as not supported by this backend."""

    timeout_s: float = Field(default=10, gt=0)
    """Seconds to wait for the engine to connect and answer GET /v1/models."""

    @field_validator("base_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("give the engine's http(s) address ending in /v1")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _needs_url(self) -> "BackendConfig":
        if self.kind == "openai" and not self.base_url:
            raise ValueError("kind openai needs base_url (the engine's address ending in /v1)")
        return self


class CompanionConfig(_Section):
    host: str = "127.0.0.1"
    """Address the companion binds to. Loopback by default; another address exposes the API to the network."""

    port: int = Field(default=8765, gt=0, lt=65536)
    """TCP port of the companion."""

    model: str = "base"
    """Registry id served at start (`forge models` lists them); `base` is the bundled SmolLM2."""

    max_loaded_models: int = Field(default=2, ge=1)
    """Bases loaded at once, each in its own worker process with its own LoRA adapters. A request whose `model`
    names a registered base or adapter that is not loaded loads it on demand; at this bound the least recently used
    idle base is unloaded first (as Ollama's OLLAMA_MAX_LOADED_MODELS). 1: one base in memory at a time."""

    admin_token: str | None = None
    """Bearer token for /admin. Null: $FORGE_ADMIN_TOKEN, else a random token written to
    <workspace>/companion/admin_token (mode 600) when the server starts."""

    allow_remote_admin: bool = False
    """Accept /admin calls from non-loopback clients (still with the token)."""

    cors_origins: list[str] = []
    """Browser origins allowed to call the API (CORS). Empty allows none; a wildcard is refused."""

    max_queue: int = Field(default=16, ge=0)
    """Requests allowed to wait for the model; beyond this a request gets 429 with Retry-After at once."""

    queue_timeout_s: float = Field(default=120, gt=0)
    """A request still waiting for the model after this long gets 503."""

    request_timeout_s: float = Field(default=300, gt=0)
    """A generation running longer than this is stopped (its worker restarted) and answered with 504."""

    load_timeout_s: float = Field(default=300, gt=0)
    """Longest a model may take to load and pass its smoke test."""

    drain_timeout_s: float = Field(default=600, gt=0)
    """After a swap, how long the old worker may take to finish its in-flight request before it is stopped."""

    n_ctx: int = Field(default=2048, gt=0)
    """Context window in tokens."""

    n_threads: int | None = None
    """CPU threads for generation; null uses every core."""

    n_gpu_layers: int = 0
    """Layers offloaded to a GPU (-1: all) when llama-cpp-python was built with GPU support."""

    max_tokens: int = Field(default=512, gt=0)
    """Default max_tokens when a request gives none."""

    exclusive_warmup: Literal["auto", "on", "off"] = "auto"
    """During a swap the new model loads beside the old one, which keeps serving; its smoke test then runs while
    the old worker holds its next request (about half a second for a small model). Two workers generating at once
    on the same CPU cores slow each other down many times over (measured: swaps of 1 s became 15-19 s under
    load). auto: on when generation runs on the CPU (n_gpu_layers 0)."""

    verify_sha256: bool = True
    """Check a model file against the registry's sha256 before loading it (refuses a corrupted or replaced
    file)."""

    backend: BackendConfig = BackendConfig()
    """What generates: forge's own llama.cpp worker (default) or an external OpenAI-compatible engine."""

    tasks: dict[str, TaskConfig] = {"convert": TaskConfig.model_validate(CONVERT_TASK)}
    """Task endpoints: POST /api/<name> {"text": ...} returns JSON following the task's schema."""

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard(cls, v: list[str]) -> list[str]:
        if any("*" in o for o in v):
            raise ValueError("a wildcard origin is not allowed; list each origin")
        return v


class BaseSourceConfig(_Section):
    source: str
    """A GGUF file, a local HF model folder, or a hub id (owner/name; never downloaded by forge)."""

    chat_template: Literal["gemma", "chatml"] | None = None
    """The turn format for a base that carries no chat template (default: Gemma's for the Gemma family, else
    ChatML)."""

    license: str | None = None
    """Shown by `forge models bases`."""


class Config(_Section):
    workspace: str = "data/workspace"
    """Workspace folder (relative to the repo root or absolute) holding forge.db, runs/, models/, exports/."""

    extract: ExtractConfig = ExtractConfig()
    """How notes, CSV and JSONL become examples."""

    validation: ValidationConfig = ValidationConfig()
    """Checks every example must pass before it can be approved."""

    dataset: DatasetConfig = DatasetConfig()
    """Dataset export defaults."""

    dedup: DedupConfig = DedupConfig()
    """Near-duplicate detection."""

    generate: GenerateConfig = GenerateConfig()
    """Generating examples with an OpenAI-compatible endpoint."""

    backtranslate: BacktranslateConfig = BacktranslateConfig()
    """Prompts written for notes by an LLM (instruction backtranslation)."""

    companion: CompanionConfig = CompanionConfig()
    """The local OpenAI-compatible server (`forge serve`)."""

    bases: dict[str, BaseSourceConfig] = {}
    """Extra base models by id, as `forge models add-base ID SOURCE` registers them (`forge models bases` lists
    every base; `forge train --set base_model=ID` trains on one)."""

    def workspace_path(self) -> Path:
        p = Path(self.workspace).expanduser()
        return p if p.is_absolute() else REPO_ROOT / p


def _set_path(data: dict, keys: list[str], raw: str, name: str) -> None:
    node = data
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"environment {name}: {'.'.join(keys)} does not name a setting")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    node[keys[-1]] = value


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, tuple[list[str], str]]:
    """FORGE_DATASET__SEED=7 → dataset.seed = 7. Values parse as JSON when they can, else as strings."""
    environ = os.environ if environ is None else environ
    out = {}
    skip = {"FORGE_ADMIN_TOKEN", "FORGE_CONFIG", "FORGE_EVAL_FAULT", "FORGE_WORKER_FAULT",
            "FORGE_TRAIN_FAULT"}  # not settings
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in skip:
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        if keys:
            out[name] = (keys, raw)
    return out


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load config.json (or `path`), apply FORGE_* overrides, validate. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    path = Path(path or environ.get("FORGE_CONFIG") or DEFAULT_CONFIG_PATH)
    data: dict = {}
    text = None
    if path.exists():
        try:
            text = path.read_text(encoding="utf-8-sig")
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a JSON object")
    try:
        Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path), text, hint="`forge config` lists settings")) from None
    for name, (keys, raw) in env_overrides(environ).items():
        _set_path(data, keys, raw, name)
        try:
            Config.model_validate(data)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, f"environment {name}",
                                                      hint="`forge config` lists settings")) from None
    return Config.model_validate(data)


def field_docs(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, docstring) for every setting, for `forge config`."""
    rows = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.extend(field_docs(ann, f"{prefix}{name}."))
        else:
            rows.append((f"{prefix}{name}", json.dumps(field.default, default=lambda o: o.model_dump(by_alias=True)),
                         field.description or ""))
    return rows
