"""Long rows (256–512 tokens): forge's trainer path vs a bare PEFT loop, in real (non-padding) tokens/s (goal ≥ 1.3×).

Both train the bundled SmolLM2-135M with LoRA r16 on q/k/v/o in fp32 on the CPU, batch 4, one epoch over the same
summaries-like conversations (a long user turn, a short assistant answer), assistant-only labels, and count
non-padding tokens per second over the steps after the first. The bare loop does what a plain PEFT script does:
batches in random order, padded to the batch's longest row, logits at every position. forge's path is the runner
with its defaults: length-grouped batches (less padding, its share printed for both) and the vocabulary
projection only where a label follows (forge/train/runner.py label_positions_loss).

Usage: .venv/bin/python -m benchmarks.bench_padding [ROWS] [BATCH]   (default 24 rows, batch 4: 6 steps)
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

SPEC = {"lora_r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "batch_size": 4, "learning_rate": 1e-4, "max_seq_len": 512, "eval_steps": 10_000, "save_steps": 10_000,
        "lr_scheduler": "constant", "warmup_ratio": 0.0, "epochs": 1.0, "forgetting_check": False}
WORDS = ("we should meet on friday about the budget and the new garden plan so bring notes tea coffee "
         "morning report client deadline draft review call later tomorrow maybe fine thanks sure ok").split()
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Eli", "Fay"]


def conversations(tokenizer, n: int, seed: int = 0) -> list[list[dict]]:
    """n dialogues-with-summary whose chat-templated length is spread over 256–512 tokens."""
    from forge.train.lengths import encode_conversation, hf_chat

    chat, rng, out = hf_chat(tokenizer), random.Random(seed), []
    while len(out) < n:
        target = rng.randint(256, 512)
        lines = []
        while True:
            lines.append(f"{rng.choice(NAMES)}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))))
            summary = " ".join(rng.choice(WORDS) for _ in range(rng.randint(15, 30))).capitalize() + "."
            conv = [{"role": "user", "content": "Summarise this dialogue:\n" + "\n".join(lines)},
                    {"role": "assistant", "content": summary}]
            length = len(encode_conversation(chat, conv)[0])
            if length >= target:
                break
        if 256 <= length <= 512:
            out.append(conv)
    return out


def bare_loop(base: Path, convs, seed: int = 0) -> tuple[float, float]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.train.lengths import tokenize

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(base)
    rows, _ = tokenize(tok, convs, SPEC["max_seq_len"])
    random.Random(seed).shuffle(rows)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules=SPEC["target_modules"], task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=SPEC["learning_rate"])
    model.train()
    bs = SPEC["batch_size"]
    tokens, padded, real_all, t0 = 0, 0, 0, None
    for step in range(len(rows) // bs):
        batch = rows[step * bs:(step + 1) * bs]
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.tensor([r["input_ids"] + [tok.pad_token_id] * (width - len(r["input_ids"])) for r in batch])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in batch])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        padded += ids.numel()
        real_all += int(mask.sum())
        if step == 0:
            t0 = time.perf_counter()  # the first step warms up allocators and kernels
        else:
            tokens += int(mask.sum())
    return tokens / (time.perf_counter() - t0), 1 - real_all / padded


def forge_runner(base: Path, convs) -> tuple[float, float]:
    from forge.train import runs
    from forge.train.events import read_events
    from forge.train.spec import TrainSpec

    run_dir = Path(tempfile.mkdtemp(prefix="forge-bench-padding-"))
    (run_dir / "data").mkdir()
    (run_dir / "data" / "train.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    TrainSpec(base_model=str(base), **SPEC).save(run_dir / "spec.json")
    final = runs.wait(runs.launch(run_dir), run_dir)
    assert final["status"] == "completed", final
    logs = [e for e in read_events(run_dir)[0] if e["event"] == "log"]
    first, last = logs[0], logs[-1]
    return (last["tokens"] - first["tokens"]) / (last["time"] - first["time"]), final["padding_share"]


def main(rows: int = 24, batch: int = 4) -> dict:
    from transformers import AutoTokenizer

    from forge.models.base_model import materialise

    SPEC["batch_size"] = batch
    base = materialise(Path(tempfile.gettempdir()) / "forge-bench-base-hf", print)
    convs = conversations(AutoTokenizer.from_pretrained(base), rows)
    bare, bare_pad = bare_loop(base, convs)
    ours, ours_pad = forge_runner(base, convs)
    result = {"rows": rows, "steps": rows // SPEC["batch_size"], "bare_peft_tok_s": round(bare, 1),
              "forge_tok_s": round(ours, 1), "ratio": round(ours / bare, 2), "goal": ">= 1.3",
              "padding_share_bare": round(bare_pad, 3), "padding_share_forge": round(ours_pad, 3)}
    print(result)
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
