"""A SentencePiece `tokenizer.model` for a base whose GGUF has a SentencePiece vocabulary (Gemma 3 270M), so
llama.cpp's converter writes that vocabulary back when a run on it is exported merged.

The converter (convert_hf_to_gguf's Gemma3Model.set_vocab, and every llama-family model) reads a SentencePiece
vocabulary only from `tokenizer.model`; without it, it falls back to treating tokenizer.json as a GPT-2 BPE
vocabulary, which is wrong for Gemma. A base materialised from a GGUF has only tokenizer.json (transformers writes
no tokenizer.model), so forge writes one from the GGUF's own token list, scores and types (`write_model`, when
materialising). The converter cannot express two things through tokenizer.model alone: it turns user-defined
pieces ("\\n", "\\n\\n", runs of spaces in Gemma) into normal ones and keeps `<unk>` as "unknown" where the original
conversion made it a control token; it takes both from tokenizer_config.json's `added_tokens_decoder`, which
transformers 5 no longer writes. `prepare_for_converter` gives the converter a view of the merged folder with
tokenizer.model and those entries, so the exported GGUF's vocabulary is the base GGUF's, token for token, score
for score, type for type (tests/forge/models/test_gemma_base.py compares them).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from forge.models.gguf_meta import read_kv  # noqa: F401 - the vocabulary's keys, read directly

TOKENIZER_MODEL = "tokenizer.model"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # GGUF's token types = SentencePiece's
VOCAB_KEYS = ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
              "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_space_prefix")


def is_sentencepiece(gguf_path: Path) -> bool:
    """Whether the GGUF's vocabulary is SentencePiece's (tokenizer.ggml.model "llama"), read from its header only."""
    from forge.models.bases import gguf_header

    return gguf_header(Path(gguf_path)).get("tokenizer.ggml.model") == "llama"


def write_model(gguf_path: Path, out: Path) -> bool:
    """Write `out` (a SentencePiece model: tokenizer.model) with the GGUF's pieces, scores and types, when its
    vocabulary is SentencePiece's; False (nothing written) otherwise. Written whole or not at all.

    Each piece is the GGUF's token; a user-defined one gets back the "▁" the converter turned into a space; the
    unknown token is typed "unknown" (SentencePiece needs one). The model is BPE with byte fallback (when the vocabulary
    has byte pieces), and a normaliser that only escapes spaces, adding a leading one only when the GGUF says so:
    Gemma's own tokenizer.model is set up this way, and tokenising text with it gives the HF tokenizer's ids."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    kv = read_kv(Path(gguf_path), VOCAB_KEYS)
    if kv.get("tokenizer.ggml.model") != "llama":
        return False
    tokens, scores, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"], kv["tokenizer.ggml.token_type"]
    if not (len(tokens) == len(scores) == len(types)):
        raise ValueError(f"{gguf_path}: {len(tokens)} tokens but {len(scores)} scores and {len(types)} types")
    unk = kv.get("tokenizer.ggml.unknown_token_id")
    if unk is None:
        unk = next((i for i, t in enumerate(types) if t == UNKNOWN), None)
    if unk is None:
        raise ValueError(f"{gguf_path}: the vocabulary has no unknown token; SentencePiece needs one")
    model = pb.ModelProto()
    for i, (token, score, kind) in enumerate(zip(tokens, scores.tolist(), types.tolist())):
        piece = model.pieces.add()
        if kind == USER_DEFINED:
            token = token.replace(" ", "\u2581")
        piece.piece, piece.score, piece.type = token, score, UNKNOWN if i == unk else int(kind)
    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(tokens)
    spec.byte_fallback = bool((types == BYTE).any())
    spec.unk_id = int(unk)
    for name in ("bos", "eos", "pad"):
        key = {"bos": "tokenizer.ggml.bos_token_id", "eos": "tokenizer.ggml.eos_token_id",
               "pad": "tokenizer.ggml.padding_token_id"}[name]
        setattr(spec, f"{name}_id", int(kv[key]) if key in kv else -1)
    norm = model.normalizer_spec
    norm.name = "identity"
    norm.add_dummy_prefix = bool(kv.get("tokenizer.ggml.add_space_prefix", True))
    norm.remove_extra_whitespaces = False
    norm.escape_whitespaces = True
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(model.SerializeToString())
    os.replace(tmp, out)
    return True


def prepare_for_converter(base_dir: Path, hf_dir: Path, view: Path) -> Path:
    """The folder to hand llama.cpp's converter for the merged model in `hf_dir`: `hf_dir` itself when the base has
    no tokenizer.model (a GPT-2 style vocabulary: the converter reads tokenizer.json); otherwise `view`, a folder of
    links to `hf_dir`'s files plus the base's tokenizer.model and a tokenizer_config.json with the
    added_tokens_decoder entries the converter needs to type the user-defined pieces and the unknown token as the
    base GGUF does. `hf_dir` itself is left alone: with those entries transformers would add 30 of Gemma's
    user-defined pieces (runs of spaces) as new tokens, and the parity check must tokenise as training did."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    src = Path(base_dir) / TOKENIZER_MODEL
    hf_dir, view = Path(hf_dir), Path(view)
    if not src.is_file():
        return hf_dir
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for item in hf_dir.iterdir():
        if item.name not in (TOKENIZER_MODEL, "tokenizer_config.json"):
            (view / item.name).symlink_to(item.resolve())
    shutil.copyfile(src, view / TOKENIZER_MODEL)
    model = pb.ModelProto.FromString(src.read_bytes())
    added = {}
    if (hf_dir / "tokenizer.json").exists():
        added = {t["id"]: t for t in json.loads((hf_dir / "tokenizer.json").read_text()).get("added_tokens", [])}
    decoder = {}
    for i, piece in enumerate(model.pieces):
        if piece.type not in (USER_DEFINED, UNKNOWN):
            continue
        known = added.get(i, {})  # the converter turns a non-special content's "▁" into a space itself
        decoder[str(i)] = {"content": known.get("content", piece.piece), "lstrip": False, "normalized": False,
                           "rstrip": False, "single_word": False,
                           "special": known.get("special", piece.type == UNKNOWN)}
    cfg_path = hf_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    cfg["added_tokens_decoder"] = {**decoder, **cfg.get("added_tokens_decoder", {})}
    (view / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return view
