"""How far can the bundled base go on a summarization task? A hyperparameter sweep outside forge's runner.

forge's CPU runs of DialogSum plateau at ROUGE-L 0.296-0.303 whatever the epochs, learning rate, data size or
export quantization (README, recipe table). This script asks the question those runs cannot afford on 2 cores:
with unlimited steps, full fine-tuning instead of LoRA, larger ranks or other decoding, where does the bundled
SmolLM2-135M (dequantized from its Q4_1 GGUF, as forge does) top out? It is made for a GPU (it runs on a CPU too,
with --tiny, to check it works) and writes one JSON line per configuration.

It mirrors forge's training choices where they matter for the answer: the chat template of the base, loss on the
assistant turn only (its <|im_end|> included), AdamW with cosine decay and 5 % warmup, batches of 8 grouped by
length, gradient clipping at 1.0; greedy decoding, ROUGE-L F1 from rouge-score without stemming (forge.eval's
scorer). It differs in one: nothing is truncated (the GPU has the memory), so it is an upper bound on what
forge's length policy allows.

    python benchmarks/ceiling_sweep.py --gguf PATH|--base DIR --train train.csv --test heldout.csv --out DIR
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import random
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PROMPT = "Summarize this dialogue:\n\n{prompt}"

CONFIGS = [  # in the order they run; a deadline skips the rest
    {"name": "base", "train": None},
    {"name": "lora-r16-lr1e-3-ep1 (forge defaults)", "train": "lora", "r": 16, "lr": 1e-3, "epochs": 1},
    {"name": "full-lr1e-4-ep2", "train": "full", "lr": 1e-4, "epochs": 2,
     "decode": [{"num_beams": 4}]},
    {"name": "full-lr5e-5-ep3", "train": "full", "lr": 5e-5, "epochs": 3},
    {"name": "lora-r16-lr1e-3-ep3", "train": "lora", "r": 16, "lr": 1e-3, "epochs": 3},
    {"name": "lora-r128-lr5e-4-ep2", "train": "lora", "r": 128, "lr": 5e-4, "epochs": 2},
    {"name": "full-lr2e-4-ep2", "train": "full", "lr": 2e-4, "epochs": 2},
    {"name": "full-lr3e-5-ep5", "train": "full", "lr": 3e-5, "epochs": 5},
    {"name": "lora-r16-lr3e-4-ep4", "train": "lora", "r": 16, "lr": 3e-4, "epochs": 4},
    {"name": "full-lr1e-4-ep4", "train": "full", "lr": 1e-4, "epochs": 4},
]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def read_csv(path: str, limit: int | None) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = [(r["dialogue"], r["summary"]) for r in csv.DictReader(f)]
    return rows[:limit] if limit else rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf")
    ap.add_argument("--base")
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=420, help="seconds: start no configuration after this")
    ap.add_argument("--tiny", action="store_true", help="a few rows and steps, to check the script on a CPU")
    ap.add_argument("--beams", type=int, default=0, help="also decode every configuration with this many beams")
    ap.add_argument("--only", default="", help="comma-separated config names (prefixes) to run")
    a = ap.parse_args()
    t0 = time.time()

    import torch
    from rouge_score import rouge_scorer
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    random.seed(0)
    if a.gguf:
        d, f = os.path.split(a.gguf)
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        base = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    else:
        tok = AutoTokenizer.from_pretrained(a.base)
        base = AutoModelForCausalLM.from_pretrained(a.base, dtype=torch.float32)
    base.to(dev)
    if tok.pad_token is None:  # the GGUF's tokenizer names none; forge's materialised copy uses <|endoftext|>
        tok.pad_token = "<|endoftext|>"
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "sweep.jsonl"), "a")

    def say(**kw):
        kw["t"] = round(time.time() - t0, 1)
        print(json.dumps(kw), flush=True)
        log.write(json.dumps(kw) + "\n")
        log.flush()

    say(event="loaded", device=dev, torch=torch.__version__,
        gpu=torch.cuda.get_device_name(0) if dev == "cuda" else None)
    train = read_csv(a.train, 16 if a.tiny else None)
    test = read_csv(a.test, 4 if a.tiny else None)
    end_id = tok.convert_tokens_to_ids("<|im_end|>")

    def user(d):
        return [{"role": "user", "content": PROMPT.format(prompt=d)}]

    def encode(d, s):
        p = tok.apply_chat_template(user(d), tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(user(d) + [{"role": "assistant", "content": s}], tokenize=False)
        pi = tok(p, add_special_tokens=False).input_ids
        fi = tok(full, add_special_tokens=False).input_ids
        assert fi[:len(pi)] == pi, "the prompt is not a prefix of the conversation"
        fi = fi[:fi.index(end_id, len(pi)) + 1]  # up to and including the assistant's <|im_end|>
        return fi, [-100] * len(pi) + fi[len(pi):]

    rows = [encode(d, s) for d, s in train]
    say(event="data", train=len(rows), test=len(test),
        tokens_p50=statistics.median(len(r[0]) for r in rows), tokens_max=max(len(r[0]) for r in rows))
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    refs = [s for _, s in test]
    ref_tokens = sorted(len(tok(s).input_ids) for s in refs)
    max_new = min(2048, max(16, math.ceil(1.5 * ref_tokens[int(0.95 * (len(ref_tokens) - 1))])))

    def batches(epoch_seed: int, bs: int = 8):
        idx = list(range(len(rows)))
        random.Random(epoch_seed).shuffle(idx)
        mega = [sorted(idx[i:i + bs * 8], key=lambda j: -len(rows[j][0])) for i in range(0, len(idx), bs * 8)]
        out = [m[i:i + bs] for m in mega for i in range(0, len(m), bs)]
        random.Random(epoch_seed + 1).shuffle(out)
        return out

    def fit(model, cfg):
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0)
        epochs = cfg["epochs"] if not a.tiny else 1
        plan = [b for e in range(math.ceil(epochs)) for b in batches(e)]
        plan = plan[:max(1, int(len(plan) * epochs / math.ceil(epochs)))]
        if a.tiny:
            plan = plan[:2]
        sched = get_cosine_schedule_with_warmup(opt, max(1, round(0.05 * len(plan))), len(plan))
        model.train()
        losses = []
        for b in plan:
            width = max(len(rows[j][0]) for j in b)
            ids = torch.tensor([rows[j][0] + [tok.pad_token_id or 0] * (width - len(rows[j][0])) for j in b])
            lab = torch.tensor([rows[j][1] + [-100] * (width - len(rows[j][1])) for j in b])
            att = torch.tensor([[1] * len(rows[j][0]) + [0] * (width - len(rows[j][0])) for j in b])
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
                loss = model(input_ids=ids.to(dev), attention_mask=att.to(dev), labels=lab.to(dev)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return len(plan), losses

    @torch.no_grad()
    def generate(model, **decode):
        model.eval()
        tok.padding_side = "left"
        preds = []
        bs = 50 if decode.get("num_beams", 1) == 1 else 20
        for i in range(0, len(test), bs):
            texts = [tok.apply_chat_template(user(d), tokenize=False, add_generation_prompt=True)
                     for d, _ in test[i:i + bs]]
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=dev == "cuda"):
                out = model.generate(**enc, max_new_tokens=max_new if not a.tiny else 8, do_sample=False,
                                     eos_token_id=end_id, pad_token_id=tok.pad_token_id or end_id, **decode)
            preds += [tok.decode(o[enc.input_ids.shape[1]:], skip_special_tokens=True).strip() for o in out]
        scores = [scorer.score(r, p)["rougeL"].fmeasure for r, p in zip(refs, preds)]
        return statistics.fmean(scores), preds

    only = [s for s in a.only.split(",") if s]
    spent = []
    for cfg in CONFIGS:
        if only and not any(cfg["name"].startswith(s) for s in only):
            continue
        est = max(spent) if spent else 0
        if time.time() - t0 + est > a.deadline:
            say(event="skipped", name=cfg["name"], reason="deadline")
            continue
        t1 = time.time()
        model = copy.deepcopy(base)
        steps, losses = 0, []
        if cfg["train"] == "lora":
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(r=cfg["r"], lora_alpha=2 * cfg["r"], lora_dropout=0.0,
                                                     target_modules=TARGETS, task_type="CAUSAL_LM"))
        if cfg["train"]:
            steps, losses = fit(model, cfg)
        t_train = time.time() - t1
        extra = [{"num_beams": a.beams}] if a.beams and {"num_beams": a.beams} not in cfg.get("decode", []) else []
        for decode in [{}] + cfg.get("decode", []) + extra:
            score, preds = generate(model, **decode)
            say(event="result", name=cfg["name"], decode=decode, rouge_l=round(score, 4), steps=steps,
                train_s=round(t_train, 1), loss_first=round(losses[0], 3) if losses else None,
                loss_last10=round(statistics.fmean(losses[-10:]), 3) if losses else None,
                words_pred=round(statistics.fmean(len(p.split()) for p in preds), 1),
                words_ref=round(statistics.fmean(len(r.split()) for r in refs), 1), sample=preds[:2])
            with open(os.path.join(a.out, "preds.jsonl"), "a") as f:
                f.write(json.dumps({"name": cfg["name"], "decode": decode, "preds": preds}) + "\n")
        spent.append(time.time() - t1)
        del model
        if dev == "cuda":
            torch.cuda.empty_cache()
    say(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
