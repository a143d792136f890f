"""A streamed reply ends as the whole reply does.

llama-cpp-python's streaming (abetlen/llama-cpp-python#372) stops yielding at bytes that do not decode (a sampled
token can be half a character: SmolLM2's "\\xe2\\x80" followed by "ς" is invalid UTF-8), then decodes the rest one
token at a time with errors="ignore", so every character split over tokens after that point is lost: seen in
the suite on a temperature-2 adapter whose reply ended "ς\\n🌟💡" and streamed as "ς\\n". The companion's worker
forwards only what was streamed while the model was generating and takes the rest from the tokens, decoded whole
(forge.models.llama_child.streamed_tail). Here the real worker runs the bundled model with its tokens forced by a
logits processor (the same ids on every CPU), streamed and not, in a child process as all llama.cpp work is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

FORCED = r"""
import json
import numpy as np
from llama_cpp import LogitsProcessorList
from companion import worker as w
from forge.models.base_model import bundled_gguf
from forge.models.llama_child import load_llama

llm = load_llama(str(bundled_gguf()), n_ctx=512, n_threads=1, seed=0)
piece = lambda b: llm.tokenize(b, add_bos=False, special=False)
# "ok" + half of a 3-byte character + "ς" (invalid UTF-8 from here on) + "\n" + 🌟 over three tokens + " done"
# + end of turn: a character split over tokens inside the held-back stretch, not only at its end
plan = piece(b"ok") + [t for t in range(llm.n_vocab()) if llm.detokenize([t]) == b"\xe2\x80"][:1] \
    + piece("ς".encode()) + piece(b"\n") + piece("🌟".encode()) + piece(b" done") + [llm.token_eos()]

def force(input_ids, scores):
    force.start = getattr(force, "start", None) or len(input_ids)
    step = len(input_ids) - force.start
    out = np.full_like(scores, -np.inf)
    out[plan[min(step, len(plan) - 1)]] = 0.0
    return out

plain_kwargs = w.Worker.kwargs
def forced_kwargs(self, params):
    force.start = None
    return {**plain_kwargs(self, params), "logits_processor": LogitsProcessorList([force])}
w.Worker.kwargs = forced_kwargs

worker, lines = w.Worker(llm, 32), []
w._emit = lambda obj: lines.append(obj)
ask = [{"role": "user", "content": "Say ok."}]
worker.handle({"id": 1, "op": "chat", "params": {"messages": ask, "max_tokens": 32}})
worker.handle({"id": 2, "op": "chat", "params": {"messages": ask, "max_tokens": 32}, "stream": True})
force.start = None
plain = llm.create_chat_completion(ask, max_tokens=32, logits_processor=LogitsProcessorList([force]))
force.start = None
raw = "".join(c["choices"][0].get("delta", {}).get("content") or ""
              for c in llm.create_chat_completion(ask, max_tokens=32, stream=True,
                                                          logits_processor=LogitsProcessorList([force])))
print(json.dumps({"plan": [llm.detokenize([t]).hex() for t in plan], "lines": lines, "raw": raw,
                  "plain": plain["choices"][0]["message"]["content"]},
                 ensure_ascii=False))
"""


def test_a_streamed_reply_keeps_characters_split_over_tokens_after_invalid_bytes():
    p = subprocess.run([sys.executable, "-c", FORCED], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert "e280" in out["plan"] and len(out["plan"]) >= 9, out["plan"]  # the ids the plan needs exist
    assert out["plain"].endswith("ς\n🌟 done"), out["plain"]  # llama-cpp-python's whole reply: what Eval scores
    whole = [x["result"] for x in out["lines"] if x.get("id") == 1 and "result" in x][0]
    reply = whole["choices"][0]["message"]["content"]
    assert reply == out["plain"] and whole["choices"][0]["finish_reason"] == "stop", reply
    chunks = [x["chunk"] for x in out["lines"] if x.get("id") == 2 and "chunk" in x]
    streamed = "".join(c["choices"][0].get("delta", {}).get("content") or "" for c in chunks)
    assert streamed == reply
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"  # the end comes last, after the text
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    ends = [x["end"] for x in out["lines"] if x.get("id") == 2 and "end" in x]
    assert ends and ends[0]["finish_reason"] == "stop"
