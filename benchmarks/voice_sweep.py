"""How well a trained run writes in the person's voice, under several decoding settings, measured with Eval's voice
judge (forge/eval/voice.py) on the run's own held-out notes (test + val): the numbers behind the `voice` recipe.

For each decoding setting, the base and the run's LoRA (exported as a GGUF adapter, applied as the companion
applies it) answer every held-out note's prompt in a llama.cpp child; the judge then reports the style classifier's
AUC (person vs system), the loop rate and the copying rate.

Usage: .venv/bin/python -m benchmarks.voice_sweep WORKSPACE RUN_ID [--max-tokens 256] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from forge import child_env
from forge.config import REPO_ROOT, Config
from forge.store import Store

SETTINGS = {
    "greedy": {"temperature": 0.0, "seed": 0},
    "greedy+rp1.15": {"temperature": 0.0, "repeat_penalty": 1.15, "seed": 0},
    "t0.7+p0.9+rp1.15": {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.15, "seed": 0},
    "t0.7+p0.9": {"temperature": 0.7, "top_p": 0.9, "seed": 0},
    "t0.7+p0.9+rp1.05": {"temperature": 0.7, "top_p": 0.9, "repeat_penalty": 1.05, "seed": 0},
    "t1.0+p0.95+rp1.15": {"temperature": 1.0, "top_p": 0.95, "repeat_penalty": 1.15, "seed": 0},
    "t1.0+minp0.05+rp1.1": {"temperature": 1.0, "top_p": 1.0, "min_p": 0.05, "repeat_penalty": 1.1, "seed": 0},
}

CHILD = r"""
import json, sys
from forge import cpu_threads
from forge.models.llama_child import apply_lora, load_llama, load_lora
model, lora, max_tokens, settings = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
convs = json.loads(sys.stdin.read())
llm = load_llama(model, n_ctx=2048, n_threads=cpu_threads(), seed=0)
if lora:
    apply_lora(llm, load_lora(llm, lora))
out = {}
for name, kw in settings.items():
    out[name] = [llm.create_chat_completion(c, max_tokens=max_tokens, **kw)["choices"][0]["message"]["content"]
                 for c in convs]
print(json.dumps(out))
"""


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("run_id")
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--only", action="append", default=None, choices=list(SETTINGS),
                    help="Measure only this decoding setting (repeatable; default: all of SETTINGS)")
    args = ap.parse_args()
    settings = {k: v for k, v in SETTINGS.items() if not args.only or k in args.only}
    from forge.eval.voice import judge
    from forge.models import export as ex

    config = Config(workspace=args.workspace)
    store = Store.for_workspace(Path(args.workspace))
    run = store.get_run(args.run_id)
    run_dir = Path(run["run_dir"])
    adapter = next((m for m in store.models() if ex.is_adapter(m) and m.get("run_id") == args.run_id), None)
    adapter = adapter or store.get_model(ex.export_adapter(store, config, args.run_id)["model_id"])
    base = store.get_model(adapter["meta"]["base_id"])
    held = (read_jsonl(run_dir / "data" / "test.jsonl") + read_jsonl(run_dir / "data" / "val.jsonl"))[:args.limit]
    train = read_jsonl(run_dir / "data" / "train.jsonl")
    convs = [[m for m in r["messages"] if m["role"] != "assistant"] for r in held]
    person = [next(m["content"] for m in reversed(r["messages"]) if m["role"] == "assistant") for r in held]
    training = [m["content"] for r in train for m in r["messages"] if m["role"] == "assistant"]
    outputs = {}
    for system, lora in (("base", ""), ("tuned", adapter["path"])):
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", CHILD, base["path"], lora, str(args.max_tokens),
                            json.dumps(settings)], input=json.dumps(convs), capture_output=True, text=True,
                           cwd=REPO_ROOT, env=child_env(), check=True)
        outputs[system] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"{system}: {len(convs)} prompts × {len(settings)} settings in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
    rows = {}
    for name in settings:
        r = judge(person, {"base": outputs["base"][name], "tuned": outputs["tuned"][name]}, training_texts=training)
        rows[name] = {s: {"auc": r["systems"][s]["auc"], "ci": [r["systems"][s]["ci_low"], r["systems"][s]["ci_high"]],
                          "loop_rate": r["systems"][s]["loop_rate"],
                          "copy_share": (r["systems"][s]["copying"] or {}).get("share"),
                          "words": r["systems"][s]["profile"].get("words_per_answer")} for s in ("base", "tuned")}
        rows[name]["person_words"] = r["person"]["profile"].get("words_per_answer")
        print(f"{name:>20}: tuned AUC {rows[name]['tuned']['auc']}, loops {rows[name]['tuned']['loop_rate']}, "
              f"copies {rows[name]['tuned']['copy_share']} | base AUC {rows[name]['base']['auc']}, "
              f"loops {rows[name]['base']['loop_rate']}")
    out = Path(args.workspace) / f"voice-sweep-{args.run_id}.json"
    out.write_text(json.dumps({"rows": rows, "outputs": outputs, "person": person, "prompts": convs}, indent=1))
    print(json.dumps({"held_out": len(held), "rows": rows, "saved": str(out)}, indent=1))


if __name__ == "__main__":
    main()
