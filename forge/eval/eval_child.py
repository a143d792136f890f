"""The evaluation generator, run as a child process:
`python -m forge.eval.eval_child MODEL MAX_TOKENS FIRST_INDEX [N_CTX] [LORA]` (N_CTX default 1024: the parent sizes it to
the longest prompt plus MAX_TOKENS; LORA: a llama.cpp GGUF LoRA adapter of MODEL, applied at scale 1 as the companion
applies the adapter a request names).

Reads a JSON list of conversations on stdin and prints one JSON line per conversation as soon as it is done, so
the parent knows exactly where a crash happened and can restart after it. Through llama-cpp-python's
chat-completion path with the GGUF's own chat template and the decoding the companion uses for a request that sets
none: the model's (or adapter's) own defaults (forge.decoding), else greedy.
FORGE_EVAL_FAULT=crash:N / hang:N (testing only) aborts or stalls at global prompt index N.
"""

from __future__ import annotations

import json
import os
import sys
import time

from forge import cpu_threads
from forge.models.llama_child import (DECODING_KEY, GREEDY, adapter_metadata, apply_lora, decoding_defaults,
                                      load_llama, load_lora, provenance, sampling)


def main() -> None:
    model, max_tokens, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    n_ctx = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
    lora = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
    conversations = json.loads(sys.stdin.read())
    fault_kind, _, fault_at = os.environ.get("FORGE_EVAL_FAULT", "").partition(":")
    llm = load_llama(model, n_ctx=n_ctx, n_threads=cpu_threads(), seed=0)
    decoding = decoding_defaults(provenance(llm))
    if lora:  # applied as the companion applies the adapter a request names, its own defaults first
        adapter = load_lora(llm, lora)
        if not adapter or apply_lora(llm, adapter):
            print(f"llama.cpp could not apply adapter {lora} to {model}", file=sys.stderr)
            sys.exit(1)
        decoding = decoding_defaults(adapter_metadata(adapter, [DECODING_KEY])) or decoding
    kw = sampling(decoding or GREEDY)
    for i, messages in enumerate(conversations, start=first):
        if fault_at and int(fault_at) == i:
            if fault_kind == "crash":
                os.abort()
            if fault_kind == "hang":
                time.sleep(3600)
        t = time.perf_counter()
        out = llm.create_chat_completion(messages, max_tokens=max_tokens, **kw)
        latency = (time.perf_counter() - t) * 1000
        print(json.dumps({"output": (out["choices"][0]["message"]["content"] or "").strip(), "error": None,
                          "latency_ms": round(latency, 1),
                          "completion_tokens": out.get("usage", {}).get("completion_tokens", 0)}), flush=True)


if __name__ == "__main__":
    main()
