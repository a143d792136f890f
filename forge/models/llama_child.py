"""Work that runs llama.cpp, always in a child process: `python -m forge.models.llama_child ACTION JSON_ARGS`.

A crash inside llama.cpp (seen on some CPUs when decoding quantized models with the default buffer types)
cannot be caught in Python; in a child it becomes a non-zero exit the parent reports cleanly. The child prints
one JSON document on its last stdout line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from forge import child_env, cpu_threads

QUANT_FTYPES = {"q4_k_m": 15, "q5_k_m": 17, "q8_0": 7, "f16": 1}  # llama_ftype values


class ChildFailed(Exception):
    """The child failed or crashed; the message says which stage and how."""


PROMPT_CHUNK = 32
"""Prompts are evaluated in batches that end at multiples of this many positions (see canonical_llama_class)."""


def load_llama(model_path: str, canonical: bool = True, **kwargs):
    """A Llama with extra buffer types off (the setting that keeps quantized decoding from crashing on some
    CPUs); everything else as llama-cpp-python defaults. `canonical` (the default for everything forge serves or
    evaluates): a CanonicalLlama, whose greedy answer to a prompt does not depend on what it evaluated before."""
    import llama_cpp.llama_cpp as lib  # the module llama.py reads its defaults from
    from llama_cpp import Llama

    params_fn = lib.llama_model_default_params

    def patched():
        params = params_fn()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = patched
    try:
        cls = canonical_llama_class() if canonical else Llama
        return cls(model_path=model_path, verbose=False, **kwargs)
    finally:
        lib.llama_model_default_params = params_fn


_CANONICAL: list = []


def canonical_llama_class():
    """llama-cpp-python's Llama, with prompts always evaluated in the same batch shapes.

    llama.cpp's numbers for a token depend on the shape of the batch it is computed in: on x86 a token evaluated
    alone (a batch of 1) gets logits up to ~0.7 apart from the same token evaluated with others (kernels for one
    row and for many accumulate in different orders; other CPUs have other thresholds, e.g. row pairs on ARM).
    Plain llama-cpp-python reuses the longest cached prefix and evaluates the rest as one batch, so the same
    prompt's batches depend on what ran before: asked twice in a row, its last token is re-evaluated alone; after
    other prompts, with its suffix. Greedy answers then change with history (issue 24).

    Here a prompt is always cut into batches that end at multiples of PROMPT_CHUNK positions (the last one at the
    prompt's end), whether it is evaluated from scratch or after a cached prefix, and a cached prefix is reused
    only up to a chunk boundary and only as far as it was itself computed in whole chunks (`canon`): tokens that
    were generated one at a time, or a prompt's last partial chunk, are evaluated again. Every token of a prompt
    is therefore computed in the very batch a fresh evaluation would put it in, on any CPU, and generated tokens
    are one per batch either way. The price: up to PROMPT_CHUNK - 1 prompt tokens more per request than the
    plain prefix cache evaluates."""
    if _CANONICAL:
        return _CANONICAL[0]
    from llama_cpp import Llama

    class CanonicalLlama(Llama):
        canon = 0  # positions [0, canon) of the KV cache were computed in whole, aligned chunks

        def chunk(self) -> int:
            return max(1, min(PROMPT_CHUNK, self.n_batch))

        def reset(self):
            super().reset()
            self.canon = 0

        def eval(self, tokens):
            c, i, tokens = self.chunk(), 0, list(tokens)
            self.canon = min(self.canon, self.n_tokens)
            while i < len(tokens):
                start = self.n_tokens
                piece = tokens[i:i + (c - start % c)]
                super().eval(piece)
                if start == self.canon and start % c == 0 and len(piece) == c:
                    self.canon = start + c
                i += len(piece)

        def generate(self, tokens, *args, **kwargs):
            tokens = list(tokens)
            if kwargs.get("reset", True) and self.n_tokens > 0:
                keep, limit = 0, min(self.canon, self.n_tokens, len(tokens) - 1)
                while keep < limit and self.input_ids[keep] == tokens[keep]:
                    keep += 1
                keep -= keep % self.chunk()
                if keep < self.n_tokens:  # what lies past `keep` is evaluated again, in the canonical batches
                    self._ctx.kv_cache_seq_rm(-1, keep, -1)
                    self.n_tokens = keep
                    self._requires_eval = True
                    self.canon = min(self.canon, keep)
            self.last_generation = (tokens, [])  # (prompt, every token sampled): see streamed_tail
            self.generating = True
            try:
                for token in super().generate(tokens, *args, **kwargs):
                    self.last_generation[1].append(token)
                    yield token
            finally:  # closed as soon as the completion loop leaves it: what it yields after that is its tail
                self.generating = False

    _CANONICAL.append(CanonicalLlama)
    return CanonicalLlama


def streamed_tail(llm, streamed: str, stop: list[str] | None = None) -> str:
    """The rest of the last reply past `streamed`, decoded as the non-streamed path decodes it.

    llama-cpp-python's streaming path (abetlen/llama-cpp-python#372, open) yields text while the tokens decode;
    at bytes that do not (a sampled token can be half a character) it holds every later token back, and once
    generation has ended decodes them one at a time with errors="ignore", so each character split over tokens in
    that stretch vanishes, though the non-streamed reply has it. The companion's worker forwards only what was
    yielded while CanonicalLlama was still generating (`llm.generating`) and takes the rest from here: the tokens
    CanonicalLlama.generate recorded, decoded whole and cut at the first stop string. "" when nothing is left."""
    import llama_cpp

    prompt, tokens = getattr(llm, "last_generation", (None, None))
    if not tokens:
        return ""
    tokens = list(tokens)
    while tokens and llama_cpp.llama_vocab_is_eog(llm._model.vocab, tokens[-1]):
        tokens.pop()
    full = llm.detokenize(tokens, prev_tokens=prompt).decode("utf-8", errors="ignore")
    cuts = [full.index(s) for s in (stop or []) if s and s in full]
    if cuts:
        full = full[:min(cuts)]
    return full[len(streamed):] if full.startswith(streamed) else ""


DECODING_KEY = "forge.decoding"
"""GGUF key (a JSON object, written by `forge export` from the run's spec) with the model's decoding defaults."""
GREEDY = {"temperature": 0.0, "seed": 0}
"""Decoding when neither the model nor the request sets any: what Eval always measured, now what is served too."""
DECODING_FIELDS = {"temperature": float, "top_p": float, "top_k": int, "min_p": float, "repeat_penalty": float,
                   "presence_penalty": float, "frequency_penalty": float, "seed": int}


def decoding_defaults(metadata: dict) -> dict:
    """The decoding defaults a model (or adapter) carries in its GGUF metadata; {} when it carries none or they do
    not read (a model is never refused for them)."""
    raw = metadata.get(DECODING_KEY)
    if not raw:
        return {}
    try:
        values = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(values, dict):
            return {}
        return {k: DECODING_FIELDS[k](v) for k, v in values.items() if k in DECODING_FIELDS and v is not None}
    except (TypeError, ValueError):
        return {}


def sampling(defaults: dict, request: dict | None = None) -> dict:
    """What a generation samples with: the model's defaults, then whatever the request sets. The companion and
    Eval both call this, so Eval scores what a client that sends no sampling settings gets."""
    out = {**defaults, **{k: v for k, v in (request or {}).items() if k in DECODING_FIELDS and v is not None}}
    if "seed" in out:
        out["seed"] = int(out["seed"]) % 2 ** 32  # llama.cpp's seed is 32-bit; any integer maps onto one
    return out


def quantize(src: str, dst: str, quant: str, allow_requantize: bool = False) -> dict:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_FTYPES[quant]
    params.allow_requantize = allow_requantize
    params.nthread = cpu_threads()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")
    return {"bytes": Path(dst).stat().st_size}


def smoke(model: str, prompt: str, max_tokens: int = 8) -> dict:
    llm = load_llama(model, n_ctx=512, n_threads=cpu_threads())
    out = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0)
    return {"text": out["choices"][0]["message"]["content"], "usage": out.get("usage", {})}


def provenance(llm) -> dict:
    """The GGUF's `forge.*` keys and `general.name`."""
    return {k: v for k, v in llm.metadata.items() if k.startswith("forge.") or k == "general.name"}


def eos_id(llm) -> int:
    return int(llm.metadata.get("tokenizer.ggml.eos_token_id", llm.token_eos()))


def gguf_chat_formatter(llm):
    """The chat template embedded in the GGUF as llama-cpp-python applies it (Jinja2ChatFormatter with the
    GGUF's BOS/EOS), or None when the GGUF has no template."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    bos_id = int(llm.metadata.get("tokenizer.ggml.bos_token_id", llm.token_bos()))
    piece = lambda i: llm.detokenize([i], special=True).decode("utf-8", "replace")  # noqa: E731
    return Jinja2ChatFormatter(template=template, eos_token=piece(eos_id(llm)), bos_token=piece(bos_id),
                               add_generation_prompt=True)


def render_with_gguf_template(model: str, conversations: list[list[dict]]) -> dict:
    """Token ids of each conversation rendered with the chat template embedded in the GGUF, the way
    llama-cpp-python applies it (Jinja2ChatFormatter), tokenised by llama.cpp's own tokenizer."""
    llm = load_llama(model, vocab_only=True)
    fmt = gguf_chat_formatter(llm)
    if fmt is None:
        return {"template": None, "ids": [], "eos": None, "metadata": provenance(llm)}
    ids = [llm.tokenize(fmt(messages=conv).prompt.encode("utf-8"), add_bos=False, special=True)
           for conv in conversations]
    return {"template": fmt.template, "ids": ids, "eos": fmt.eos_token, "eos_id": eos_id(llm),
            "metadata": provenance(llm)}


def adapter_metadata(adapter, keys: list[str]) -> dict:
    """String metadata of a loaded LoRA adapter, as llama.cpp read it."""
    import ctypes

    import llama_cpp

    out = {}
    buf = ctypes.create_string_buffer(4096)
    for key in keys:
        if llama_cpp.llama_adapter_meta_val_str(adapter, key.encode(), buf, len(buf)) >= 0:
            out[key] = buf.value.decode("utf-8", "replace")
    return out


def load_lora(llm, path: str):
    """A GGUF LoRA adapter loaded on `llm`'s model (llama_adapter_lora_init: llama.cpp checks each tensor against
    the base and logs why it refuses), or None when it refuses."""
    import llama_cpp

    return llama_cpp.llama_adapter_lora_init(llm._model.model, str(path).encode("utf-8")) or None


def apply_lora(llm, adapter) -> int:
    """Apply one loaded adapter at scale 1 to `llm`'s context, or none (adapter None), as the companion applies the
    adapter a request names; llama.cpp's return code (0: applied)."""
    import ctypes

    import llama_cpp

    if adapter is None:
        return llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, None, 0, None)
    return llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter), 1,
                                             (ctypes.c_float * 1)(1.0))


def adapter_smoke(model: str, prompt: str, keys: list[str], lora: str | None = None, max_tokens: int = 4) -> dict:
    """Load `lora` on `model` (llama.cpp checks each tensor against the base), read its metadata back, generate.
    Without `lora` the base is loaded first and the adapter's path is then read from stdin, so the base loads
    while the parent is still writing the adapter."""
    llm = load_llama(model, n_ctx=256, n_threads=cpu_threads())
    lora = lora or sys.stdin.readline().strip()
    if not lora:
        return {"text": None, "metadata": {}}  # the parent gave up (its conversion failed)
    adapter = load_lora(llm, lora)
    if not adapter:
        raise RuntimeError(f"llama.cpp could not load {lora} as an adapter of {model} (wrong base or shapes)")
    if apply_lora(llm, adapter):
        raise RuntimeError("llama_set_adapters_lora failed")
    # a raw prompt, not the chat template's long system turn: the point is that the graph runs with the adapter
    out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0)
    return {"text": out["choices"][0]["text"], "metadata": adapter_metadata(adapter, keys)}


def greedy(model: str, conversations: list[list[dict]], template: str, lora: str | None = None,
           max_tokens: int = 24) -> dict:
    """Greedy completions of each conversation rendered with `template` (one template for every model compared,
    so only the weights differ), optionally with a LoRA adapter applied."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = load_llama(model, n_ctx=1024, n_threads=cpu_threads(), lora_path=lora)
    piece = lambda i: llm.detokenize([i], special=True).decode("utf-8", "replace")  # noqa: E731
    bos_id = int(llm.metadata.get("tokenizer.ggml.bos_token_id", llm.token_bos()))
    fmt = Jinja2ChatFormatter(template=template, eos_token=piece(eos_id(llm)), bos_token=piece(bos_id),
                              add_generation_prompt=True)
    texts = []
    for conv in conversations:
        ids = llm.tokenize(fmt(messages=conv).prompt.encode("utf-8"), add_bos=False, special=True)
        out = llm.create_completion(ids, max_tokens=max_tokens, temperature=0.0, top_k=1)
        texts.append(out["choices"][0]["text"])
    return {"texts": texts}


ACTIONS = {"quantize": quantize, "smoke": smoke, "render": render_with_gguf_template, "adapter_smoke": adapter_smoke,
           "greedy": greedy}


def start_child(action: str, **kwargs) -> subprocess.Popen:
    """Start an action that reads more input from stdin (finish it with `finish_child`)."""
    return subprocess.Popen([sys.executable, "-m", "forge.models.llama_child", action, json.dumps(kwargs)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env())


def finish_child(p: subprocess.Popen, action: str, stdin: str, timeout: float = 600) -> dict:
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise ChildFailed(f"{action}: llama.cpp did not finish within {timeout:.0f} s") from None
    return _child_result(action, p.returncode, out, err)


def _child_result(action: str, returncode: int, stdout: str, stderr: str) -> dict:
    if returncode < 0:
        raise ChildFailed(f"{action}: llama.cpp crashed (signal {-returncode}); nothing was registered")
    lines = stdout.strip().splitlines()
    if returncode != 0 or not lines:
        tail = (stderr.strip().splitlines() or ["no output"])[-1]
        raise ChildFailed(f"{action} failed: {tail}")
    return json.loads(lines[-1])


def run_child(action: str, timeout: float = 600, **kwargs) -> dict:
    """Run one action in a fresh interpreter; a crash or timeout raises ChildFailed with a readable reason."""
    try:
        p = subprocess.run([sys.executable, "-m", "forge.models.llama_child", action, json.dumps(kwargs)],
                           capture_output=True, text=True, timeout=timeout,
                           env=child_env())
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"{action}: llama.cpp did not finish within {timeout:.0f} s") from None
    if p.returncode < 0:
        raise ChildFailed(f"{action}: llama.cpp crashed (signal {-p.returncode}); nothing was registered")
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise ChildFailed(f"{action} failed: {tail}")
    return json.loads(lines[-1])


if __name__ == "__main__":
    action, raw = sys.argv[1], sys.argv[2]
    try:
        result = ACTIONS[action](**json.loads(raw))
    except Exception as e:  # reported to the parent as a one-line reason
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))
