"""Shared pieces of the extractors: reading text in whatever encoding a file arrived in, and the report of what
was skipped and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from forge.data.validate import ROLES, normalize_messages
from forge.errors import ForgeError

Progress = Callable[[int, int], None]


class ExtractError(ForgeError):
    """A source cannot be read as asked (unknown kind, columns not found); the message says what to pass."""


# Why a file, note, row or line gave no example. Every skip carries one of these codes (the report counts them)
# and a one-line reason naming what to change.
SKIP_CODES = {
    "tag-filter": "left out by the tag filter",
    "folder-filter": "left out by the folder filter",
    "skipped-folder": "in a folder forge never reads (settings, trash, attachments)",
    "template": "an Obsidian template",
    "drawing": "an Excalidraw drawing",
    "not-a-note": "not a Markdown note",
    "empty": "empty",
    "too-large": "over the size limit",
    "unreadable": "unreadable",
    "bad-frontmatter": "frontmatter that is not valid YAML",
    "bad-record": "a record or row forge cannot use",
    "parser-error": "a parser failed on it",
}


@dataclass
class Skipped:
    source: str
    reason: str
    code: str = "bad-record"

    def to_json(self) -> dict:
        return {"source": self.source, "reason": self.reason, "code": self.code}


@dataclass
class Extraction:
    """What an extractor found: items ready for Store.ingest, the items it skipped (each with a reason), how many
    files/rows/lines it read, and for a vault a survey of what is in it (notes, folders, tags with counts)."""

    items: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    read: int = 0
    survey: dict | None = None
    chunked: dict | None = None
    repaired: list[tuple[str, str]] = field(default_factory=list)  # (source, what was repaired): read anyway

    def skip(self, source: str, reason: str, code: str = "bad-record") -> None:
        self.skipped.append(Skipped(source, reason, code))

    def reasons(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s.code] = out.get(s.code, 0) + 1
        return out


def describe_error(e: BaseException) -> str:
    """One line for an exception a parser library raised inside one item."""
    msg = " ".join(str(e).split()) or "no message"
    return f"{type(e).__name__}: {msg[:200]}"


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Text and the encoding it was read with: UTF-8 (with or without BOM), UTF-16 with BOM, else the best guess of
    charset-normalizer among the single-byte encodings people's exports come in (cp1252, latin-1, ...)."""
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            data = data[3:]  # a BOM before bytes that are not UTF-8 (files re-saved by hand): guess, as below
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            pass  # an odd byte count or a lone surrogate: not UTF-16 after all
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    order = ["cp1252", "latin_1", "iso8859_15", "cp1250", "mac_roman"]
    found = list(from_bytes(data[:200_000], cp_isolation=order))
    # Short texts often tie (cp1250 and cp1252 read "Café" alike); then the far more common cp1252 wins.
    found.sort(key=lambda m: (round(m.chaos, 3), -round(m.coherence, 3),
                              order.index(m.encoding) if m.encoding in order else len(order)))
    if found and found[0].encoding == "mac_roman":
        # Classic Mac text is rare now; on a tie in chaos its slightly higher 'coherence' on a few words is noise
        # (cp1252's "spät" read as "sp‰t"), so a Windows/ISO reading that is as clean wins.
        found = [m for m in found[1:] if round(m.chaos, 3) <= round(found[0].chaos, 3)] + found
    if found:
        # charset-normalizer names one encoding for several that read the bytes alike: take the commonest of them
        alike = [e for e in found[0].could_be_from_charset if e in order] or [found[0].encoding]
        encoding = min(alike, key=lambda e: order.index(e) if e in order else len(order))
    else:
        encoding = "cp1252"
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"  # every byte is valid latin-1: never fails


def read_text(path: Path) -> tuple[str, str]:
    return decode_bytes(path.read_bytes())


def over_limit(size: int, limit: int, key: str = "extract.max_file_bytes") -> str:
    """`N bytes is over the L-byte limit (KEY: ...)`, with the setting that raises it and a value that would do."""
    env = "FORGE_" + key.upper().replace(".", "__")
    enough = -(-size // 10_000_000) * 10_000_000  # the size rounded up to 10 MB
    return (f"{size} bytes is over the {limit}-byte limit ({key}: raise it in config.json, or run with "
            f"{env}={enough})")


def lfs_pointer(path: str | Path) -> str | None:
    """What to do, when the file is a Git LFS pointer (a clone without git-lfs holds these ~130-byte text files in
    place of the data, and they read as 'not valid JSON' or one odd CSV row); None for any other file."""
    import re

    try:
        with open(path, "rb") as f:
            head = f.read(1025)
    except OSError:
        return None
    if len(head) > 1024 or not head.startswith(b"version https://git-lfs.github.com/spec/"):
        return None
    size = re.search(rb"\nsize (\d+)", head)
    n = int(size.group(1)) if size else 0
    amount = f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB" if n >= 1e3 else f"{n}-byte"
    what = f"a Git LFS pointer to a {amount} file" if size else "a Git LFS pointer"
    return f"{what}, not the data: run `git lfs pull` in its repository, or download the file itself"


def messages_from_pair(prompt: str, response: str, system: str | None = None) -> list[dict]:
    msgs = []
    if system and system.strip():
        msgs.append({"role": "system", "content": system})
    msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
    return normalize_messages(msgs)


def coerce_messages(value: object) -> list[dict] | None:
    """A list of {role, content} dicts (OpenAI/HF chat shape, `from`/`value` ShareGPT shape too) or None."""
    if not isinstance(value, list) or not value:
        return None
    out = []
    aliases = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}
    for m in value:
        if not isinstance(m, dict):
            return None
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        role = aliases.get(role, role)
        if role not in ROLES or not isinstance(content, str):
            return None
        out.append({"role": role, "content": content})
    return normalize_messages(out)


def _merge_turns(turns: list[tuple[str, str]]) -> list[dict]:
    """Consecutive turns of one role joined (an answer split around a tool call reads as one answer). A user turn
    with no text (only an image or a file) ends the conversation there: what follows answers what forge cannot
    see, and joining the answers around it would pair the wrong question with them. Leading assistant turns are
    left out (a conversation starts with the person)."""
    # Each turn's texts are joined once at the end: joined as they came, an answer split around thousands of tool
    # calls took time growing with the square of its length.
    out: list[tuple[str, list[str]]] = []
    has_user = False
    for role, text in turns:
        if not text.strip():
            if role == "user":
                break
            continue
        if role == "assistant" and not has_user:
            continue
        has_user = has_user or role == "user"
        if out and out[-1][0] == role:
            out[-1][1].append(text)
        else:
            out.append((role, [text]))
    return [{"role": role, "content": "\n\n".join(texts)} for role, texts in out]


def chatgpt_turns(conv: dict) -> list[dict] | None:
    """A conversation of ChatGPT's data export (conversations.json: a tree of nodes in `mapping`): the branch that
    ends at `current_node` (the one the person last saw; regenerated answers on other branches are left out), from
    the root down. Kept: the text of user, assistant and visible system messages; left out: tool calls and their
    output (an assistant message addressed to a tool, a `tool` message), images, reasoning summaries."""
    mapping = conv.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        return None
    node_id = conv.get("current_node")
    if not isinstance(node_id, str) or node_id not in mapping:  # no current node named: the last leaf
        leaves = [k for k, v in mapping.items() if isinstance(v, dict) and not v.get("children")]
        node_id = leaves[-1] if leaves else None
    path, seen = [], set()
    while isinstance(node_id, str) and node_id in mapping and node_id not in seen:
        seen.add(node_id)
        node = mapping[node_id] if isinstance(mapping[node_id], dict) else {}
        path.append(node.get("message"))
        node_id = node.get("parent")
    turns = []
    for msg in reversed(path):
        if not isinstance(msg, dict):
            continue
        role = (msg.get("author") or {}).get("role") if isinstance(msg.get("author"), dict) else None
        content = msg.get("content") if isinstance(msg.get("content"), dict) else {}
        meta = msg.get("metadata") if isinstance(msg.get("metadata"), dict) else {}
        if role not in ("user", "assistant", "system") or msg.get("recipient", "all") != "all" \
                or meta.get("is_visually_hidden_from_conversation") \
                or content.get("content_type") not in ("text", "multimodal_text"):
            continue
        parts = content.get("parts") if isinstance(content.get("parts"), list) else []
        turns.append((role, "\n\n".join(p for p in parts if isinstance(p, str) and p.strip())))
    return normalize_messages(_merge_turns(turns))


def claude_turns(conv: dict) -> list[dict] | None:
    """A conversation of Claude's data export (`chat_messages`, each with `sender` human/assistant and `text`, or
    `content` blocks of which the text ones are kept)."""
    turns = []
    for m in conv.get("chat_messages") or []:
        if not isinstance(m, dict) or m.get("sender") not in ("human", "assistant"):
            continue
        blocks = m.get("content") if isinstance(m.get("content"), list) else []
        texts = [b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text"
                 and isinstance(b.get("text"), str)]
        text = "\n\n".join(texts) if texts else (m.get("text") if isinstance(m.get("text"), str) else "")
        turns.append(("user" if m["sender"] == "human" else "assistant", text))
    return normalize_messages(_merge_turns(turns))


PROMPT_LIKE = ("input", "prompt", "question", "query")


def export_kind(rec: object) -> str | None:
    """"chatgpt" or "claude" for a conversation of that data export, None for any other record (one with a chat,
    instruction or prompt-like key is read as that shape, never as an export)."""
    if not isinstance(rec, dict) or any(k in rec for k in (*CHAT_KEYS, "instruction", *PROMPT_LIKE)):
        return None
    if isinstance(rec.get("mapping"), dict):
        return "chatgpt"
    return "claude" if isinstance(rec.get("chat_messages"), list) else None


def export_title(rec: object) -> str | None:
    """The title of a ChatGPT or Claude export conversation (None for any other record)."""
    kind = export_kind(rec)
    if kind is None:
        return None
    title = rec.get("title" if kind == "chatgpt" else "name")
    return str(title).strip() if title else "untitled"


# Prompt/answer key pairs, in the order they are tried: the four forge read first keep their precedence (a record
# with several keys imports as it always did), then the ones Dolly-, SQuAD- and query-style datasets use.
PAIRS = (("input", "output"), ("prompt", "completion"), ("prompt", "response"), ("question", "answer"),
         ("question", "response"), ("query", "response"), ("query", "answer"), ("prompt", "output"),
         ("prompt", "answer"), ("input", "response"), ("input", "answer"), ("question", "output"))
RESPONSE_KEYS = ("output", "response", "answer", "completion")  # an instruction's answer, Alpaca's `output` first


def record_to_messages(obj: object) -> list[dict] | None:
    """The conversation inside one record of the common LLM-output shapes, or None if it is none of them:
    {"messages": [...]} (or ShareGPT's `conversations`), Alpaca {instruction, input, output}, Dolly {instruction,
    context, response}, a prompt-like key with an answer-like one (PAIRS; a SQuAD-style `context` follows a
    `question`), and a conversation of a ChatGPT or Claude data export (a record with none of those keys)."""
    if not isinstance(obj, dict):
        return None
    for key in CHAT_KEYS:
        if key in obj:
            return coerce_messages(obj[key])
    system = obj.get("system") if isinstance(obj.get("system"), str) else None
    answer = next((obj[k] for k in RESPONSE_KEYS if isinstance(obj.get(k), str)), None)
    if isinstance(obj.get("instruction"), str) and answer is not None:
        extra = next((obj[k] for k in ("input", "context") if isinstance(obj.get(k), str) and obj[k].strip()), "")
        prompt = obj["instruction"] + (f"\n\n{extra}" if extra else "")
        return messages_from_pair(prompt, answer, system)
    for p, r in PAIRS:
        if isinstance(obj.get(p), str) and isinstance(obj.get(r), str):
            ctx = obj.get("context") if p == "question" and isinstance(obj.get("context"), str) else ""
            return messages_from_pair(obj[p] + (f"\n\n{ctx}" if ctx.strip() else ""), obj[r], system)
    kind = export_kind(obj)
    return chatgpt_turns(obj) if kind == "chatgpt" else claude_turns(obj) if kind == "claude" else None


CHAT_KEYS = ("messages", "conversations", "conversation")


@dataclass
class Found:
    """One example in a record, or why there is none: `label` is "" for the record itself, "instance N" for one
    of a Self-Instruct task's instances and "conversation 'TITLE'" for one of a chat export; `messages` is None
    when skipped (then `code` and `reason` say why); `meta` is what the item stores beside the messages."""

    label: str
    messages: list[dict] | None
    code: str = ""
    reason: str = ""
    meta: dict = field(default_factory=dict)  # a preference row's {"rejected": str} or {"label": bool}


def _kind_of(value: object) -> str:
    return "null" if value is None else {"str": "text", "dict": "an object", "list": "a list"}.get(
        type(value).__name__, f"a {type(value).__name__}")


def why_not(rec: object) -> tuple[str, str]:
    """(code, reason) for a record record_to_messages found no conversation in."""
    if not isinstance(rec, dict):
        return "bad-record", f"{_kind_of(rec)} where a record was expected"
    for key in CHAT_KEYS:
        if key in rec:
            if rec[key] in (None, [], ""):
                return "empty", f"'{key}' is empty"
            return "bad-record", f"'{key}' is not a list of {{role, content}} turns with known roles"
    if isinstance(rec.get("instruction"), str):
        key = next((k for k in RESPONSE_KEYS if k in rec), None)
        if key is None:
            return "bad-record", "has 'instruction' but no 'output' (or response, answer, completion)"
        if rec[key] is None:
            return "empty", f"'{key}' is null"
        return "bad-record", f"'{key}' is {_kind_of(rec[key])}, not text"
    keys = ", ".join(sorted(map(str, rec))) or "no keys"
    return "bad-record", (f"not a known example shape (has: {keys}); expected messages, instruction/output, "
                          f"instruction/response, input/output, prompt/completion or question/answer")


def empty_turn(msgs: list[dict]) -> str | None:
    """Why a conversation is unusable because a user or assistant turn is blank, or None."""
    for m in msgs:
        if m["role"] in ("user", "assistant") and not m["content"].strip():
            return f"the {m['role']} turn is empty"
    if not any(m["role"] == "assistant" for m in msgs):
        return "no assistant turn"
    return None


def found_in(rec: object, label: str = "") -> Found:
    if not label and (title := export_title(rec)) is not None:
        label = f"conversation {title!r}"
    msgs = record_to_messages(rec)
    if msgs is None:
        return Found(label, None, *why_not(rec))
    empty = empty_turn(msgs)
    if empty:
        return Found(label, None, "empty", empty)
    return Found(label, msgs)


def is_self_instruct(rec: object) -> bool:
    return (isinstance(rec, dict) and "instances" in rec and isinstance(rec.get("instruction"), str)
            and not any(k in rec for k in CHAT_KEYS))


def examples_of(rec: object) -> list[Found]:
    """Every example in one record. A Self-Instruct seed task ({"instruction", "instances": [{"input", "output"}],
    "is_classification"}) gives one per instance: the instruction and the instance's input as the user turn, its
    output as the assistant turn; a bad instance is skipped on its own. Any other record gives one (preference
    records are read by preference.records_examples, which asks here for the rest)."""
    if not is_self_instruct(rec):
        return [found_in(rec)]
    instances = rec["instances"]
    if instances is None or instances == []:
        return [Found("", None, "empty", "a Self-Instruct task with an empty 'instances' list")]
    if not isinstance(instances, list):
        return [Found("", None, "bad-record", f"'instances' is {_kind_of(instances)}, not a list")]
    out = []
    for k, inst in enumerate(instances, start=1):
        label = f"instance {k}"
        if not isinstance(inst, dict):
            out.append(Found(label, None, "bad-record", f"{label} is {_kind_of(inst)}, not {{input, output}}"))
            continue
        one = {"instruction": rec["instruction"], "input": inst.get("input"), "output": inst.get("output")}
        if "output" not in inst:
            one.pop("output")
        if isinstance(rec.get("system"), str):
            one["system"] = rec["system"]
        f = found_in(one, label)
        out.append(Found(label, f.messages, f.code, f"{label}: {f.reason}" if f.reason else ""))
    return out
