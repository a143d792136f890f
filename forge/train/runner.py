"""The training recipe, run in its own process: `python -m forge.train.runner RUN_DIR [--resume]`.

setup / train / save_checkpoint / cleanup, as torchtune's recipes. RUN_DIR holds spec.json and data/ (train
and val JSONL in chat format); the runner writes events.jsonl, checkpoints/checkpoint-N (complete only once
`forge_complete.json` is written, last), adapter/ (the final LoRA adapter with tokenizer and chat template) and
status.json. SIGINT/SIGTERM saves a checkpoint and stops; a NaN/inf loss fails the run with its step; running
out of memory fails it with a suggestion.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from forge.store import sha256_file
from forge.train.events import DiskLogger
from forge.train.spec import SpecError, TrainSpec, default_targets, pick_backend

MARKER = "forge_complete.json"
ADAPTER_FILE = "adapter_model.safetensors"


class RunFailed(Exception):
    """The run cannot go on; the message is what the user sees."""


def write_marker(ckpt: Path, step: int) -> None:
    adapter = ckpt / ADAPTER_FILE
    info = {"step": step, "time": time.time(), "adapter_sha256": sha256_file(adapter) if adapter.exists() else None}
    tmp = ckpt / (MARKER + ".tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, ckpt / MARKER)


def marker_problem(folder: Path, required: bool = True) -> str | None:
    """Why the adapter in `folder` cannot be trusted (missing, unmarked, corrupted), or None. The marker is
    written last and records the adapter's sha256; `required=False` accepts a folder without one."""
    marker = folder / MARKER
    if not marker.exists():
        return "no completion marker (the save was interrupted)" if required else None
    try:
        info = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return "unreadable completion marker"
    adapter = folder / ADAPTER_FILE
    if not adapter.exists():
        return f"{ADAPTER_FILE} is missing"
    if info.get("adapter_sha256") and sha256_file(adapter) != info["adapter_sha256"]:
        return f"{ADAPTER_FILE} does not match its checksum (corrupted)"
    return None


def checkpoint_ok(ckpt: Path) -> tuple[bool, str]:
    problem = marker_problem(ckpt)
    if problem is None and not (ckpt / "trainer_state.json").exists():
        problem = "trainer_state.json is missing"
    return problem is None, problem or ""


def latest_checkpoint(run_dir: Path, warn=lambda msg: None) -> Path | None:
    """The newest complete checkpoint; incomplete or corrupted ones are skipped with a warning."""
    ckpts = sorted((p for p in (run_dir / "checkpoints").glob("checkpoint-*") if p.is_dir()),
                   key=lambda p: int(p.name.rsplit("-", 1)[1]), reverse=True)
    for ckpt in ckpts:
        ok, why = checkpoint_ok(ckpt)
        if ok:
            return ckpt
        warn(f"skipping {ckpt.name}: {why}")
    return None


def load_split(path: Path) -> list[list[dict]]:
    """Conversations of one split, refusing the first invalid one by file and line."""
    from forge.validate import validate_messages

    out = []
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            msgs = json.loads(line)["messages"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise RunFailed(f"{path}:{n}: not a {{\"messages\": [...]}} line") from None
        problems = validate_messages(msgs, max_length=10**9)
        if problems:
            raise RunFailed(f"{path}:{n}: invalid example: {problems[0]}")
        out.append(msgs)
    return out


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant turn (content and end-of-turn)."""
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        upto = tokenizer.apply_chat_template(messages[:i + 1], tokenize=False)
        if full.startswith(upto) and upto.startswith(prompt):
            spans.append((len(prompt), len(upto)))
        else:  # a template without the prefix property: fall back to the content itself
            start = full.find(m["content"])
            if start >= 0:
                spans.append((start, start + len(m["content"])))
    return full, spans


def tokenize(tokenizer, conversations: list[list[dict]], max_len: int) -> tuple[list[dict], int]:
    """input_ids with labels only on assistant tokens (-100 elsewhere); and how many were truncated."""
    rows, truncated = [], 0
    for msgs in conversations:
        text, spans = assistant_spans(tokenizer, msgs)
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        labels = [tok if any(a <= s < b for a, b in spans) else -100 for tok, (s, _) in zip(ids, offsets)]
        if len(ids) > max_len:
            truncated += 1
            ids, labels = ids[:max_len], labels[:max_len]
        if any(lab != -100 for lab in labels):
            rows.append({"input_ids": ids, "labels": labels})
    return rows, truncated


class Recipe:
    def __init__(self, run_dir: Path, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.rank = int(os.environ.get("RANK", "0"))
        self.log = DiskLogger(self.run_dir, enabled=self.rank == 0)
        self.spec = TrainSpec.load(self.run_dir / "spec.json")
        self.stop_requested = False
        self.failure: str | None = None
        self.trainer = None
        self.status = "starting"

    # ---- status ------------------------------------------------------------------------------------------
    def set_status(self, status: str, **extra) -> None:
        self.status = status
        self.log.log("status", status=status, **extra)
        if self.rank == 0:
            info = {"status": status, "time": time.time(), "pid": os.getpid(), **extra}
            tmp = self.run_dir / "status.json.tmp"
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self.run_dir / "status.json")
            db = self.run_dir.parent.parent / "forge.db"
            if db.exists():
                from forge.store import Store

                store = Store(db)
                store.update_run(self.run_dir.name, status, extra)
                store.close()

    def _on_signal(self, signum, frame) -> None:
        if not self.stop_requested:
            self.stop_requested = True
            self.log.log("status", status="stopping", message=f"{signal.Signals(signum).name}: saving a checkpoint")

    # ---- recipe ------------------------------------------------------------------------------------------
    def setup(self) -> None:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self.set_status("starting")
        spec = self.spec
        train_rows = load_split(self.run_dir / "data" / "train.jsonl")
        val_rows = load_split(self.run_dir / "data" / "val.jsonl")
        if not train_rows:
            raise RunFailed("no training examples: approve some and export the dataset first")

        import torch

        if spec.num_threads:
            torch.set_num_threads(spec.num_threads)
        backend, why = pick_backend(spec)
        use_cuda = torch.cuda.is_available()
        quant = spec.quantization if spec.quantization != "auto" else ("4bit" if use_cuda else "none")
        if quant == "4bit" and not use_cuda:
            raise RunFailed("4-bit QLoRA needs a CUDA GPU (bitsandbytes); set quantization to none on this machine")
        self.log.log("info", message=f"backend {backend} ({why}); "
                                     f"{'4-bit QLoRA' if quant == '4bit' else 'full-precision LoRA'} on "
                                     f"{'CUDA' if use_cuda else 'CPU'}", backend=backend, quantization=quant)

        from forge.train.base_model import resolve_base

        workspace = self.run_dir.parent.parent
        base = resolve_base(spec.base_model, workspace, lambda msg: self.log.log("info", message=msg))
        self.base_path = str(base)
        if backend == "unsloth":
            model, tokenizer = self._load_unsloth(base, quant)
        else:
            model, tokenizer = self._load_peft(base, quant, use_cuda)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        (self.run_dir / "chat_template.jinja").write_text(tokenizer.chat_template or "")

        train_ds, truncated = tokenize(tokenizer, train_rows, spec.max_seq_len)
        val_ds, _ = tokenize(tokenizer, val_rows, spec.max_seq_len)
        if truncated:
            self.log.log("warning", message=f"{truncated} training examples were longer than max_seq_len "
                                            f"{spec.max_seq_len} tokens and were truncated")
        self.trainer = self._build_trainer(model, tokenizer, train_ds, val_ds, backend, use_cuda)
        self.tokenizer = tokenizer
        self.backend = backend

    def _targets(self, base) -> list[str]:
        if self.spec.target_modules:
            return self.spec.target_modules
        from transformers import AutoConfig

        return default_targets(AutoConfig.from_pretrained(base).model_type)

    def _load_peft(self, base, quant: str, use_cuda: bool):
        import torch
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {}
        if quant == "4bit":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16)
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        else:
            kwargs["dtype"] = torch.bfloat16 if use_cuda else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        if quant == "4bit":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self.spec.gradient_checkpointing)
        lora = LoraConfig(r=self.spec.lora_r, lora_alpha=self.spec.lora_alpha, lora_dropout=self.spec.lora_dropout,
                          target_modules=self._targets(base), task_type="CAUSAL_LM", bias="none")
        model = get_peft_model(model, lora)
        return model, tokenizer

    def _load_unsloth(self, base, quant: str):
        # Unsloth's documented entry points; it patches the model for faster kernels and smaller memory.
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(base), max_seq_length=self.spec.max_seq_len, load_in_4bit=quant == "4bit", dtype=None)
        model = FastLanguageModel.get_peft_model(
            model, r=self.spec.lora_r, lora_alpha=self.spec.lora_alpha, lora_dropout=self.spec.lora_dropout,
            target_modules=self._targets(base), bias="none",
            use_gradient_checkpointing="unsloth" if self.spec.gradient_checkpointing else False,
            random_state=self.spec.seed)
        return model, tokenizer

    def _build_trainer(self, model, tokenizer, train_rows, val_rows, backend, use_cuda):
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import SFTConfig, SFTTrainer

        spec = self.spec
        recipe = self
        args = SFTConfig(
            output_dir=str(self.run_dir / "checkpoints"),
            per_device_train_batch_size=spec.batch_size, per_device_eval_batch_size=spec.batch_size,
            gradient_accumulation_steps=spec.grad_accum, learning_rate=spec.learning_rate,
            lr_scheduler_type=spec.lr_scheduler, warmup_steps=spec.warmup_ratio,
            num_train_epochs=spec.epochs, max_steps=spec.max_steps or -1,
            logging_steps=spec.logging_steps, logging_nan_inf_filter=False,
            eval_strategy="steps" if val_rows else "no", eval_steps=spec.eval_steps,
            save_strategy="steps", save_steps=spec.save_steps, save_total_limit=3,
            seed=spec.seed, data_seed=spec.seed, gradient_checkpointing=spec.gradient_checkpointing,
            bf16=use_cuda, fp16=False, use_cpu=not use_cuda, report_to=[], disable_tqdm=True,
            max_length=spec.max_seq_len, packing=False, dataset_num_proc=None,
            include_num_input_tokens_seen="non_padding", dataloader_num_workers=0, remove_unused_columns=True,
        )

        class Events(TrainerCallback):
            """Trainer logs → forge events; the stop flag → a checkpoint and a clean stop; NaN → failed."""

            def __init__(self):
                self.t_last = time.time()
                self.tokens_last = 0
                self.t_start = time.time()
                self.step_start = 0

            def on_train_begin(self, args, state, control, **kw):
                self.step_start = state.global_step
                self.tokens_last = state.num_input_tokens_seen
                recipe.set_status("running", max_steps=state.max_steps, resumed_from=state.global_step or None)

            def on_step_end(self, args, state, control, **kw):
                if recipe.stop_requested:
                    control.should_save = True
                    control.should_training_stop = True

            def on_log(self, args, state, control, logs=None, **kw):
                logs = logs or {}
                now = time.time()
                if "loss" in logs:
                    loss = float(logs["loss"])
                    tokens = state.num_input_tokens_seen
                    tps = (tokens - self.tokens_last) / max(now - self.t_last, 1e-9)
                    done = state.global_step - self.step_start
                    eta = (now - self.t_start) / done * (state.max_steps - state.global_step) if done else None
                    recipe.log.log("log", step=state.global_step, loss=loss, lr=logs.get("learning_rate"),
                                   grad_norm=logs.get("grad_norm"), tokens_per_s=round(tps, 1),
                                   tokens=tokens, eta_s=round(eta, 1) if eta is not None else None,
                                   max_steps=state.max_steps, epoch=logs.get("epoch"))
                    self.t_last, self.tokens_last = now, tokens
                    if not math.isfinite(loss):
                        recipe.failure = f"loss became {loss} at step {state.global_step}; lower the learning rate"
                        control.should_training_stop = True
                        control.should_save = False
                if "eval_loss" in logs:
                    recipe.log.log("eval", step=state.global_step, eval_loss=float(logs["eval_loss"]))

            def on_save(self, args, state, control, **kw):
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.exists() and recipe.rank == 0:
                    write_marker(ckpt, state.global_step)
                    recipe.log.log("checkpoint", step=state.global_step, path=str(ckpt))

        from transformers import Trainer

        class ForgeSFTTrainer(SFTTrainer):
            def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
                # The plain causal-LM loss of transformers' Trainer: TRL's chunked lm-head pass that also
                # computes entropy and token accuracy for its logs costs ~35% throughput on a CPU, for metrics
                # forge does not show.
                inputs["use_cache"] = False
                result = Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs, **kwargs)
                nan_at = spec.fault_nan_at_step
                if nan_at is not None and self.state.global_step + 1 >= nan_at:
                    if return_outputs:
                        return result[0] * float("nan"), result[1]
                    return result * float("nan")
                return result

        trainer = ForgeSFTTrainer(
            model=model, args=args, processing_class=tokenizer,
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
            callbacks=[Events()])
        return trainer

    def train(self) -> None:
        ckpt = None
        if self.resume:
            ckpt = latest_checkpoint(self.run_dir, lambda msg: self.log.log("warning", message=msg))
            if ckpt is None:
                self.log.log("warning", message="no complete checkpoint to resume from: starting from step 0")
            else:
                self.log.log("info", message=f"resuming from {ckpt.name}")
        self.trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)

    def save_checkpoint(self) -> Path:
        """The final adapter, in the same layout whichever backend trained it."""
        out = self.run_dir / "adapter"
        tmp = self.run_dir / "adapter.partial"
        self.trainer.model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        (tmp / "chat_template.jinja").write_text(self.tokenizer.chat_template or "")
        (tmp / "forge_adapter.json").write_text(json.dumps({
            "base_model": self.spec.base_model, "base_path": self.base_path, "backend": self.backend,
            "step": self.trainer.state.global_step}))
        write_marker(tmp, self.trainer.state.global_step)
        if out.exists():
            import shutil

            shutil.rmtree(out)
        os.replace(tmp, out)
        return out

    def cleanup(self) -> None:
        state = self.trainer.state
        losses = [h["loss"] for h in state.log_history if "loss" in h]
        summary = {"step": state.global_step, "first_loss": losses[0] if losses else None,
                   "last_loss": losses[-1] if losses else None}
        if self.failure:
            self.set_status("failed", message=self.failure, **summary)
            return
        if self.rank == 0:
            adapter = self.save_checkpoint()
            summary["adapter_dir"] = str(adapter)
        self.set_status("stopped" if self.stop_requested else "completed", **summary)


def recipe_main(run_dir: str, resume: bool = False) -> int:
    recipe = Recipe(Path(run_dir), resume)
    try:
        recipe.setup()
        recipe.train()
        recipe.cleanup()
    except (RunFailed, SpecError) as e:
        recipe.set_status("failed", message=str(e))
        return 1
    except MemoryError:
        recipe.set_status("failed", message="out of memory: lower batch_size or max_seq_len (or enable "
                                            "gradient_checkpointing)")
        return 1
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            recipe.set_status("failed", message="out of memory: lower batch_size or max_seq_len (or enable "
                                                "gradient_checkpointing)")
            return 1
        recipe.set_status("failed", message=f"{type(e).__name__}: {e}")
        raise
    except Exception as e:
        recipe.set_status("failed", message=f"{type(e).__name__}: {e}")
        raise
    return 0 if recipe.status in ("completed", "stopped") else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: python -m forge.train.runner RUN_DIR [--resume]")
    sys.exit(recipe_main(args[0], resume="--resume" in args))
