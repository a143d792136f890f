"""forge runner tokens/s vs a bare PEFT loop on the same model, data and hyperparameters (goal ≥ 0.95×).

Both train SmolLM2-135M with LoRA r16 on q/k/v/o in fp32 on the CPU, batch 8, the same tokenised examples
(assistant-only labels), and count non-padding tokens per second over the steps after the first.

--method dpo (or kto): the seconds per step of forge's DPO (KTO) run against forge's SFT run on the same rows, measured
in one run (goal: a DPO step ≤ 2.5× an SFT step). The pairs are the SFT rows as chosen and the same answers with a
filler opener as rejected; the KTO labels are both, good and bad.
Usage: .venv/bin/python -m benchmarks.bench_train [STEPS] [--method dpo|kto]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = {"lora_r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "batch_size": 8, "learning_rate": 1e-4, "max_seq_len": 128, "eval_steps": 10_000, "save_steps": 10_000,
        "lr_scheduler": "constant", "warmup_ratio": 0.0}


def demo_conversations(n: int = 64) -> list[list[dict]]:
    lines = (REPO / "data" / "demo" / "reminders.jsonl").read_text().splitlines() if (
        REPO / "data" / "demo" / "reminders.jsonl").exists() else []
    convs = []
    for line in lines[:n]:
        r = json.loads(line)
        convs.append([{"role": "user", "content": r["input"]}, {"role": "assistant", "content": r["output"]}])
    while len(convs) < n:
        i = len(convs)
        convs.append([{"role": "user", "content": f"remind me to water plant {i} tomorrow at {i % 12 + 1}"},
                      {"role": "assistant", "content": f"water plant {i} | tomorrow at {i % 12 + 1}"}])
    return convs


def bare_loop(base: Path, convs, steps: int) -> float:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.train.runner import tokenize

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(base)
    rows, _ = tokenize(tok, convs, SPEC["max_seq_len"])
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                           LoraConfig(r=16, lora_alpha=32, target_modules=SPEC["target_modules"], task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=SPEC["learning_rate"])
    model.train()
    bs = SPEC["batch_size"]
    tokens, t0 = 0, None
    for step in range(steps):
        batch = [rows[(step * bs + k) % len(rows)] for k in range(bs)]
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.tensor([r["input_ids"] + [tok.pad_token_id] * (width - len(r["input_ids"])) for r in batch])
        labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in batch])
        mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step == 0:
            t0 = time.perf_counter()  # the first step warms up allocators and kernels
        else:
            tokens += int(mask.sum())
    return tokens / (time.perf_counter() - t0)


def forge_runner(base: Path, convs, steps: int) -> float:
    from forge.train import runs
    from forge.train.events import read_events
    from forge.train.spec import TrainSpec

    run_dir = Path(tempfile.mkdtemp(prefix="forge-bench-run-"))
    (run_dir / "data").mkdir()
    (run_dir / "data" / "train.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    TrainSpec(base_model=str(base), max_steps=steps, **SPEC).save(run_dir / "spec.json")
    proc = runs.launch(run_dir)
    final = runs.wait(proc, run_dir)
    assert final["status"] == "completed", final
    logs = [e for e in read_events(run_dir)[0] if e["event"] == "log"]
    first, last = logs[0], logs[-1]
    return (last["tokens"] - first["tokens"]) / (last["time"] - first["time"])


def step_seconds(base: Path, convs, steps: int, method: str) -> float:
    """Mean seconds per optimizer step of a forge run (sft, dpo or kto) over the steps after the first."""
    from forge.train import runs
    from forge.train.events import read_events
    from forge.train.spec import TrainSpec

    run_dir = Path(tempfile.mkdtemp(prefix=f"forge-bench-{method}-"))
    (run_dir / "data").mkdir()
    (run_dir / "data" / "train.jsonl").write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    if method != "sft":
        folder = run_dir / "data" / "preferences"
        folder.mkdir()
        recs = []
        for c in convs:
            prompt, good = c[:-1], c[-1:]
            bad = [{"role": "assistant", "content": "Sure! Here's your reminder: " + c[-1]["content"]}]
            if method == "dpo":
                recs.append({"prompt": prompt, "chosen": good, "rejected": bad})
            else:
                recs += [{"prompt": prompt, "completion": good, "label": True},
                         {"prompt": prompt, "completion": bad, "label": False}]
        (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    spec = {**SPEC, "forgetting_check": False, "method": method}
    TrainSpec(base_model=str(base), max_steps=steps, **spec).save(run_dir / "spec.json")
    final = runs.wait(runs.launch(run_dir), run_dir)
    assert final["status"] == "completed", final
    logs = [e for e in read_events(run_dir)[0] if e["event"] == "log"]
    return (logs[-1]["time"] - logs[0]["time"]) / (len(logs) - 1)


def main_method(steps: int, method: str) -> dict:
    from forge.models.base_model import materialise

    base = materialise(Path(tempfile.gettempdir()) / "forge-bench-base-hf", print)
    convs = demo_conversations()
    sft = step_seconds(base, convs, steps, "sft")
    pref = step_seconds(base, convs, steps, method)
    result = {"steps": steps, "sft_s_per_step": round(sft, 3), f"{method}_s_per_step": round(pref, 3),
              "ratio": round(pref / sft, 2), "goal": "<= 2.5"}
    print(result)
    return result


def main(steps: int = 12) -> dict:
    from forge.models.base_model import materialise

    base = materialise(Path(tempfile.gettempdir()) / "forge-bench-base-hf", print)
    convs = demo_conversations()
    bare = bare_loop(base, convs, steps)
    ours = forge_runner(base, convs, steps)
    result = {"steps": steps, "bare_peft_tok_s": round(bare, 1), "forge_runner_tok_s": round(ours, 1),
              "ratio": round(ours / bare, 2), "goal": ">= 0.95"}
    print(result)
    return result


if __name__ == "__main__":
    argv = sys.argv[1:]
    method = argv[argv.index("--method") + 1] if "--method" in argv else None
    numbers = [a for a in argv if a.isdigit()]
    n = int(numbers[0]) if numbers else 12
    main_method(n, method) if method and method != "sft" else main(n)
