"""One greedy answer per (model, prompt, settings), whatever the model evaluated before (issue 24).

llama.cpp computes a token's numbers differently depending on the batch it is evaluated in (on x86, a batch of
one differs from a batch of many; other CPUs have other thresholds), so plain prefix reuse made a prompt's answer
depend on what ran before. forge's CanonicalLlama evaluates every prompt in the same batches a fresh evaluation
uses. These tests check the batches themselves (true on every CPU) and the answers, in a child process as all
llama.cpp work is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[3]

BATCHES = r"""
import json
from llama_cpp import Llama
from forge.models.base_model import bundled_gguf
from forge.models.llama_child import PROMPT_CHUNK, gguf_chat_formatter, load_llama

batches = []
plain_eval = Llama.eval
def recording_eval(self, tokens):
    batches.append((self.n_tokens, len(tokens)))
    return plain_eval(self, tokens)
Llama.eval = recording_eval

def ask(llm, messages, max_tokens=16):
    batches.clear()
    text = llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0)["choices"][0]["message"]["content"]
    prompt = gguf_chat_formatter(llm)(messages=messages).prompt
    return text, list(batches), len(llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

path = str(bundled_gguf())
P = [{"role": "user", "content": "remind me to call mom tomorrow at 5"}]
Q = [{"role": "user", "content": "Write a haiku about autumn leaves."}]
long_q = [{"role": "user", "content": "Tell me about lighthouses. " * 12}]
turns = P + [{"role": "assistant", "content": "Sure, I will remind you."}, {"role": "user", "content": "and at 6?"}]
out = {"chunk": PROMPT_CHUNK, "runs": []}
for messages in (P, Q, long_q, turns):
    fresh_llm = load_llama(path, n_ctx=1024, n_threads=1, seed=0)
    fresh = ask(fresh_llm, messages)
    del fresh_llm
    llm = load_llama(path, n_ctx=1024, n_threads=1, seed=0)
    again = [ask(llm, messages) for _ in range(2)]      # in a row: the prompt is cached whole
    for other in (Q, P, long_q, turns):                 # after other prompts sharing the template's prefix
        ask(llm, other)
        again.append(ask(llm, messages))
    out["runs"].append({"fresh": fresh, "again": again})
print(json.dumps(out))
"""


def test_a_prompt_is_evaluated_in_the_batches_of_a_fresh_evaluation_and_answered_alike():
    """Asked fresh, again in a row, and after other prompts (a multi-turn one among them): every batch that reads a
    prompt token is one a fresh evaluation uses (aligned chunks, the last ending at the prompt's end), generated
    tokens go one per batch, and the answer is the fresh one."""
    p = subprocess.run([sys.executable, "-c", BATCHES], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    chunk = out["chunk"]
    for run in out["runs"]:
        fresh_text, fresh_batches, n_prompt = run["fresh"]
        fresh_prompt = [(s, n) for s, n in fresh_batches if s < n_prompt]
        assert sum(n for _, n in fresh_prompt) == n_prompt and fresh_prompt[0][0] == 0
        assert all(s % chunk == 0 and (n == chunk or s + n == n_prompt) for s, n in fresh_prompt), fresh_prompt
        for text, batches, _ in run["again"]:
            assert text == fresh_text
            read = [(s, n) for s, n in batches if s < n_prompt]
            assert read and set(read) <= set(fresh_prompt), (read, fresh_prompt)
            assert all(n == 1 for s, n in batches if s >= n_prompt)
    # the cache still serves: a long prompt asked again re-reads only its last chunk
    long_run = out["runs"][2]
    assert long_run["fresh"][2] > 2 * chunk
    assert sum(n for s, n in long_run["again"][1][1] if s < long_run["fresh"][2]) <= chunk
