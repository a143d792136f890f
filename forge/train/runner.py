"""The training recipe, run in its own process: `python -m forge.train.runner RUN_DIR [--resume]`.

setup / train / save_checkpoint / cleanup, as torchtune's recipes. RUN_DIR holds spec.json and data/ (train
and val JSONL in chat format); the runner writes events.jsonl, checkpoints/checkpoint-N (complete only once
`forge_complete.json` is written, last), adapter/ (the final LoRA adapter with tokenizer and chat template),
forgetting.json (the general reference set's loss before and after) and status.json (with the padding share).
Examples longer than max_seq_len follow the spec's truncation policy (forge/train/lengths.py). SIGINT/SIGTERM saves a checkpoint and stops; a NaN/inf loss fails the run with its step; running
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

from forge.errors import ForgeError
from forge.train.checkpoints import latest_checkpoint, write_marker
from forge.train.events import DiskLogger
from forge.train.lengths import assistant_spans, tokenize  # noqa: F401 - the runner's tokenization
from forge.train.spec import TrainSpec, default_targets, pick_backend


REWARD_KEYS = {"rewards/margins": "rewards_margin", "rewards/chosen": "rewards_chosen",
               "rewards/rejected": "rewards_rejected", "rewards/accuracies": "rewards_accuracy", "kl": "kl"}


def rewards(logs: dict, prefix: str = "") -> dict:
    """A DPO/KTO trainer's reward figures in one log (TRL's names) as event fields; {} for SFT."""
    out = {}
    for key, name in REWARD_KEYS.items():
        value = logs.get(prefix + key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[prefix + name] = round(float(value), 5)
    return out


class RunFailed(ForgeError):
    """The run cannot go on; the message is what the user sees."""


def _fault(stage: str) -> None:
    """Testing only: FORGE_TRAIN_FAULT=<stage> SIGKILLs the runner there, as the OOM killer or a power cut would."""
    if os.environ.get("FORGE_TRAIN_FAULT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)


def load_split(path: Path) -> list[list[dict]]:
    """Conversations of one split, refusing the first invalid one by file and line."""
    from forge.data.validate import validate_messages

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


def load_preferences(path: Path, kind: str) -> list[dict]:
    """Records of one split of a preference export (forge dataset export --preferences): TRL's conversational
    format, prompt/chosen/rejected (dpo) or prompt/completion/label (kto). The first bad line is refused by file
    and line."""
    out = []
    if not path.exists():
        return out
    answers = ("chosen", "rejected") if kind in ("dpo", "orpo") else ("completion",)
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            prompt = rec["prompt"]
            ok = (isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "role" in m and "content" in m
                                                              for m in prompt)
                  and all(isinstance(rec[a], list) and rec[a] and rec[a][-1].get("role") == "assistant"
                          and str(rec[a][-1].get("content", "")).strip() for a in answers)
                  and (kind != "kto" or isinstance(rec["label"], bool)))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            shape = "prompt/chosen/rejected" if kind in ("dpo", "orpo") else "prompt/completion/label"
            raise RunFailed(f"{path}:{n}: not a {shape} record in TRL's conversational format")
        keep = ("prompt", *answers) + (("label",) if kind == "kto" else ())
        out.append({k: rec[k] for k in keep})
    return out


def grouping(config_cls, group: bool) -> dict:
    """The TrainingArguments that batch examples of similar length together (renamed in transformers 5)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_cls)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length" if group else "random"}
    return {"group_by_length": group}


def score_only_labelled_positions() -> None:
    """TRL's fused LM head (DPO, KTO) scores every position of the batch, prompt and padding included, on any device
    without Triton, so that compilers (Neuron) see one tile shape; it scores only the completion tokens on CUDA. A CPU
    compiles nothing, so there forge asks for the CUDA way: on short answers after long prompts the LM head over a
    49k (SmolLM2) or 262k (Gemma) vocabulary was most of a DPO step. Same log-probabilities, fewer rows."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return
    original = getattr(trl_utils, "_use_triton", None)
    if original is None or getattr(original, "forge_compact_on_cpu", False):
        return

    def compact(device) -> bool:
        return device.type == "cpu" or original(device)

    compact.forge_compact_on_cpu = True
    trl_utils._use_triton = compact


def label_positions_supported(model) -> bool:
    """Whether the model takes a boolean `logits_to_keep` mask (transformers 5 causal LMs)."""
    import inspect

    try:
        from transformers.modeling_utils import slice_logits_to_keep  # noqa: F401 - the mask form's helper
    except ImportError:
        return False
    target = model
    for attr in ("base_model", "model"):  # PeftModel → LoraModel → the causal LM
        target = getattr(target, attr, target)
    return "logits_to_keep" in inspect.signature(target.forward).parameters


def label_positions_loss(trainer, model, inputs: dict, num_items_in_batch=None):
    """The causal-LM loss with the vocabulary projection run only where a label follows.

    The same number transformers' loss gives (the sum of cross-entropies over label tokens, divided by the label
    tokens in the batch, or across the accumulated batches when the trainer passes that count), but the lm_head
    (576 × 49k for SmolLM2) and the softmax run on the assistant tokens only instead of every position of the
    batch: prompts and padding cost no logits. On summaries-like rows that is most of the batch."""
    import torch

    labels = inputs.pop("labels")
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    logits = model(**inputs, logits_to_keep=keep).logits
    target = labels[:, 1:][keep[:, :-1]]
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             reduction="sum")
    if num_items_in_batch is not None and trainer.model_accepts_loss_kwargs:
        loss = loss / (num_items_in_batch.to(loss.device) if torch.is_tensor(num_items_in_batch)
                       else num_items_in_batch)
        if trainer.args.average_tokens_across_devices and trainer.accelerator.num_processes > 1:
            loss = loss * trainer.accelerator.num_processes
    else:
        loss = loss / max(int(target.numel()), 1)
    return loss


class PaddingCounter:
    """Wraps a collator; counts the tokens of each batch it makes and how many of them are padding."""

    def __init__(self):
        self.pad = 0
        self.total = 0

    def wrap(self, collate):
        def counted(examples):
            batch = collate(examples)
            ids = batch["input_ids"]
            real = sum(len(e["input_ids"]) for e in examples)
            self.total += int(ids.numel())
            self.pad += int(ids.numel()) - real
            return batch

        return counted

    def share(self) -> float | None:
        return self.pad / self.total if self.total else None


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
        self.padding = PaddingCounter()

    # ---- status ------------------------------------------------------------------------------------------
    def set_status(self, status: str, **extra) -> None:
        self.status = status
        self.log.log("status", status=status, **extra)
        if self.rank == 0:
            info = {"status": status, "time": time.time(), "pid": os.getpid(), **extra}
            tmp = self.run_dir / "status.json.tmp"
            tmp.write_text(json.dumps(info))
            os.replace(tmp, self.run_dir / "status.json")
        # The store is not touched here: runs.finalize(), in the process that launched this one, reads
        # status.json into it, so a runner killed before its last word still leaves a run marked failed.

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

        from forge.models.base_model import resolve_base

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

        if spec.method != "sft":
            self.tokenizer, self.backend = tokenizer, backend
            train_ds, val_ds = self._preference_rows(tokenizer, base)
            self.forgetting_before = self._reference_loss(model, tokenizer, before=True)
            self.trainer = self._build_preference_trainer(model, tokenizer, train_ds, val_ds, use_cuda)
            return
        if spec.max_seq_len == "auto":  # a run folder made without create_run: measure here
            from forge.train.lengths import hf_chat, model_context, plan

            report = plan(spec, train_rows, hf_chat(tokenizer), model_context(str(base)))
            spec.max_seq_len, spec.max_seq_len_reason = report["max_seq_len"], report["reason"]
            spec.batch_size, spec.grad_accum = report["batch_size"], report["grad_accum"]
            self.log.log("info", message=f"max_seq_len {spec.max_seq_len} ({spec.max_seq_len_reason})")
        train_ds, counts = tokenize(tokenizer, train_rows, spec.max_seq_len, spec.truncation)
        val_ds, _ = tokenize(tokenizer, val_rows, spec.max_seq_len, spec.truncation)
        if counts["over"]:
            how = (f"{counts['cut']} cut in the middle of the longest user turn (marked), "
                   if spec.truncation == "middle-of-user" else "")
            self.log.log("warning", message=f"{counts['over']} training examples were longer than max_seq_len "
                                            f"{spec.max_seq_len} tokens: {how}{counts['dropped']} dropped "
                                            f"(truncation {spec.truncation}; assistant turns are never cut)",
                         over=counts["over"], cut=counts["cut"], dropped=counts["dropped"])
        if counts["masked"]:
            self.log.log("warning", message=f"{counts['masked']} training examples have no assistant tokens "
                                            f"and were left out")
        if not train_ds:
            raise RunFailed(f"no training example fits in max_seq_len {spec.max_seq_len} tokens "
                            f"(truncation {spec.truncation}): raise max_seq_len or use auto")
        self.tokenizer = tokenizer
        self.backend = backend
        self.forgetting_before = self._reference_loss(model, tokenizer, before=True)
        self.trainer = self._build_trainer(model, tokenizer, train_ds, val_ds, backend, use_cuda)

    # ---- preference training (dpo / kto) -------------------------------------------------------------------
    def _preference_rows(self, tokenizer, base) -> tuple[list[dict], list[dict]]:
        """The run's preference records (data/preferences/), with the length policy: max_seq_len "auto" covers
        98 % of the records (prompt + the longer answer, rounded up to 32, within the model's context); a record
        longer than max_seq_len is dropped, never cut, so no answer loses its end."""
        spec = self.spec
        folder = self.run_dir / "data" / "preferences"
        train = load_preferences(folder / "train.jsonl", spec.method)
        val = load_preferences(folder / "val.jsonl", spec.method)
        if not train:
            what = "KTO labels" if spec.method == "kto" else "preference pairs"
            raise RunFailed(f"no {what} in {folder / 'train.jsonl'}: edit machine-written answers in Curate, vote "
                            f"in Eval or import a preference dataset, then start the run again")
        answers = ("completion",) if spec.method == "kto" else ("chosen", "rejected")

        def length(rec):
            return max(len(tokenizer(tokenizer.apply_chat_template(rec["prompt"] + rec[a], tokenize=False),
                                     add_special_tokens=False)["input_ids"]) for a in answers)

        lengths = [length(r) for r in train]
        if spec.max_seq_len == "auto":
            from forge.train.lengths import model_context

            ordered = sorted(lengths)
            p98 = ordered[min(len(ordered) - 1, math.ceil(0.98 * len(ordered)) - 1)]
            spec.max_seq_len = min(-(-p98 // 32) * 32, model_context(str(base)) or 10**9)
            spec.max_seq_len_reason = f"auto: covers 98 % of the {len(train)} training records (p98 {p98} tokens)"
            self.log.log("info", message=f"max_seq_len {spec.max_seq_len} ({spec.max_seq_len_reason})")
        over = [i for i, n in enumerate(lengths) if n > spec.max_seq_len]
        if over:
            self.log.log("warning", message=f"{len(over)} training records are longer than max_seq_len "
                                            f"{spec.max_seq_len} tokens and were dropped (answers are never cut)",
                         over=len(over), dropped=len(over))
            dropped = set(over)
            train = [r for i, r in enumerate(train) if i not in dropped]
        val = [r for r in val if length(r) <= spec.max_seq_len]
        if not train:
            raise RunFailed(f"no training record fits in max_seq_len {spec.max_seq_len} tokens: raise it or use auto")
        what = "labelled answers (KTO)" if spec.method == "kto" else "preference pairs"
        self.log.log("info", message=f"{len(train)} training and {len(val)} validation {what} (β {spec.beta})",
                     records=len(train), val_records=len(val))
        return train, val

    def _build_preference_trainer(self, model, tokenizer, train_rows, val_rows, use_cuda):
        """TRL's DPOTrainer or KTOTrainer on the LoRA model. Its reference is a frozen copy of the starting adapter
        (TRL adds it beside the trained one: the SFT run's adapter with from_run, the zero-initialised one, i.e.
        the base, otherwise), so no second model is loaded."""
        from datasets import Dataset

        spec = self.spec
        score_only_labelled_positions()
        extra: dict = {"ref_model": None}
        if spec.method == "dpo":
            from trl import DPOConfig as Config
            from trl import DPOTrainer as Trainer
        elif spec.method == "kto":
            from trl import KTOConfig as Config
            from trl import KTOTrainer as Trainer
        else:  # ORPO needs no reference model
            from trl.experimental.orpo import ORPOConfig as Config
            from trl.experimental.orpo import ORPOTrainer as Trainer

            extra = {}
        # KTO estimates its KL term against the neighbours in a fixed-order batch (TRL requires sequential
        # sampling); the export's order is already a hash order, unrelated to source or time.
        options = {"max_length": spec.max_seq_len} if spec.method == "orpo" else {"max_length": None}
        if spec.method == "dpo" and spec.sft_weight > 0:
            options.update(loss_type=["sigmoid", "sft"], loss_weights=[1.0, spec.sft_weight])
        if spec.method in ("dpo", "kto"):
            options["precompute_ref_log_probs"] = spec.precompute_ref
        args = Config(**self._common_args(bool(val_rows), use_cuda), beta=spec.beta, **options,
                      **(grouping(Config, False) if spec.method != "kto" else {}))
        nan_at = spec.fault_nan_at_step
        if options.get("precompute_ref_log_probs"):
            self.log.log("info", message=f"the reference's log-probabilities of the {len(train_rows)} training and "
                                         f"{len(val_rows)} validation records are computed once, before step 1")

        class ForgePreferenceTrainer(Trainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                              num_items_in_batch=num_items_in_batch)
                if nan_at is not None and self.state.global_step + 1 >= nan_at:
                    return (result[0] * float("nan"), result[1]) if return_outputs else result * float("nan")
                return result

        return ForgePreferenceTrainer(
            model=model, args=args, processing_class=tokenizer, **extra,
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(val_rows) if val_rows else None, callbacks=[self._events_callback()])

    # ---- forgetting --------------------------------------------------------------------------------------
    def _reference_rows(self, tokenizer) -> list[dict]:
        from forge.train.recipes import reference_path

        path = Path(self.spec.reference_data).expanduser() if self.spec.reference_data else reference_path()
        rows, _ = tokenize(tokenizer, load_split(path), 10**6)
        return rows

    def _reference_loss(self, model, tokenizer, before: bool) -> dict | None:
        """Mean loss per assistant token on the general reference set: with the adapter disabled (the base) before
        training, with it after. None when the check is off, on ranks other than 0, or if it cannot run."""
        if not self.spec.forgetting_check or self.rank != 0:
            return None
        try:
            import contextlib

            import torch

            rows = self._reference_rows(tokenizer)
            if not rows:
                return None
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            device = next(model.parameters()).device
            was_training = model.training
            sliced = label_positions_supported(model)
            model.eval()
            total, count = 0.0, 0
            off = model.disable_adapter() if before and hasattr(model, "disable_adapter") else contextlib.nullcontext()
            with torch.no_grad(), off:
                for k in range(0, len(rows), 8):
                    batch = rows[k:k + 8]
                    width = max(len(r["input_ids"]) for r in batch)
                    ids = torch.tensor([r["input_ids"] + [pad] * (width - len(r["input_ids"])) for r in batch])
                    labels = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in batch])
                    mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"]))
                                         for r in batch])
                    keep = torch.zeros_like(labels, dtype=torch.bool)
                    keep[:, :-1] = labels[:, 1:] != -100
                    target = labels[:, 1:][keep[:, :-1]].to(device)
                    if sliced:  # logits only where an answer token follows
                        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False,
                                       logits_to_keep=keep.to(device)).logits
                    else:
                        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                       use_cache=False).logits[keep.to(device)]
                    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target,
                                                             reduction="sum")
                    total += float(loss)
                    count += int(target.numel())
            if was_training:
                model.train()
            return {"loss": total / max(count, 1), "rows": len(rows), "tokens": count}
        except Exception as e:  # noqa: BLE001 - a guard, never the reason a run fails
            self.log.log("warning", message=f"forgetting check skipped: {type(e).__name__}: {e}")
            return None

    def write_forgetting(self) -> dict | None:
        before = getattr(self, "forgetting_before", None)
        if before is None:
            return None
        after = self._reference_loss(self.trainer.model, self.tokenizer, before=False)
        if after is None:
            return None
        spec = self.spec
        change = after["loss"] - before["loss"]
        result = {"loss_before": round(before["loss"], 4), "loss_after": round(after["loss"], 4),
                  "change": round(change, 4), "threshold": spec.forgetting_threshold,
                  "warn": change > spec.forgetting_threshold, "rows": before["rows"], "tokens": before["tokens"],
                  "reference": spec.reference_data or "data/reference/general.jsonl"}
        (self.run_dir / "forgetting.json").write_text(json.dumps(result, indent=2) + "\n")
        line = (f"forgetting: loss on the general reference set {result['loss_before']:.3f} → "
                f"{result['loss_after']:.3f} (change {change:+.3f})")
        if result["warn"]:
            self.log.log("warning", message=line + f", over the threshold {spec.forgetting_threshold}: the tuned "
                                                   f"model may have lost general ability (lower the learning rate "
                                                   f"or epochs)", forgetting=result)
        else:
            self.log.log("info", message=line, forgetting=result)
        return result

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
        if self.spec.from_run:
            from peft import PeftModel

            adapter = self.from_run_adapter()
            self.log.log("info", message=f"starting from run {self.spec.from_run}'s adapter ({adapter})")
            return PeftModel.from_pretrained(model, str(adapter), is_trainable=True), tokenizer
        lora = LoraConfig(r=self.spec.lora_r, lora_alpha=self.spec.lora_alpha, lora_dropout=self.spec.lora_dropout,
                          target_modules=self._targets(base), task_type="CAUSAL_LM", bias="none")
        model = get_peft_model(model, lora)
        return model, tokenizer

    def from_run_adapter(self) -> Path:
        """The finished adapter of spec.from_run, a run of the same workspace."""
        adapter = self.run_dir.parent / self.spec.from_run / "adapter"
        if not (adapter / "adapter_config.json").exists():
            raise RunFailed(f"run {self.spec.from_run} has no finished adapter ({adapter}): pick a completed or "
                            f"stopped run for from_run")
        return adapter

    def _load_unsloth(self, base, quant: str):
        # Unsloth's documented entry points; it patches the model for faster kernels and smaller memory.
        from unsloth import FastLanguageModel

        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(base), max_seq_length=self.spec.max_seq_len if isinstance(self.spec.max_seq_len, int)
            else 4096, load_in_4bit=quant == "4bit", dtype=None)
        model = FastLanguageModel.get_peft_model(
            model, r=self.spec.lora_r, lora_alpha=self.spec.lora_alpha, lora_dropout=self.spec.lora_dropout,
            target_modules=self._targets(base), bias="none",
            use_gradient_checkpointing="unsloth" if self.spec.gradient_checkpointing else False,
            random_state=self.spec.seed)
        return model, tokenizer

    def _build_trainer(self, model, tokenizer, train_rows, val_rows, backend, use_cuda):
        """TRL's SFTTrainer with forge's arguments, events callback and loss."""
        from datasets import Dataset

        trainer_class = self._trainer_class()
        return trainer_class(
            model=model, args=self._training_args(bool(val_rows), use_cuda), processing_class=tokenizer,
            train_dataset=Dataset.from_list(train_rows),
            eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
            callbacks=[self._events_callback()])

    def _trackers(self) -> list[str]:
        """spec.report_to, with TensorBoard and MLflow writing into the workspace unless told otherwise."""
        trackers = list(self.spec.report_to)
        workspace = self.run_dir.parent.parent
        if "tensorboard" in trackers:
            os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(workspace / "tensorboard" / self.run_dir.name))
        if "mlflow" in trackers:
            os.environ.setdefault("MLFLOW_TRACKING_URI", (workspace / "mlruns").as_uri())
            os.environ.setdefault("MLFLOW_RUN_NAME", self.run_dir.name)
        return trackers

    def _common_args(self, has_val: bool, use_cuda: bool) -> dict:
        """The spec as the arguments every TRL config takes (transformers' TrainingArguments)."""
        spec = self.spec
        return dict(
            output_dir=str(self.run_dir / "checkpoints"),
            per_device_train_batch_size=spec.batch_size, per_device_eval_batch_size=spec.batch_size,
            gradient_accumulation_steps=spec.grad_accum, learning_rate=spec.learning_rate,
            lr_scheduler_type=spec.lr_scheduler, warmup_steps=spec.warmup_ratio,
            num_train_epochs=spec.epochs, max_steps=spec.max_steps or -1,
            logging_steps=spec.logging_steps, logging_nan_inf_filter=False,
            eval_strategy="steps" if has_val else "no", eval_steps=spec.eval_steps,
            save_strategy="steps", save_steps=spec.save_steps, save_total_limit=3,
            seed=spec.seed, data_seed=spec.seed, gradient_checkpointing=spec.gradient_checkpointing,
            bf16=use_cuda, fp16=False, use_cpu=not use_cuda, report_to=self._trackers(), disable_tqdm=True,
            include_num_input_tokens_seen="non_padding", dataloader_num_workers=0,
            neftune_noise_alpha=spec.neftune_alpha)

    def _training_args(self, has_val: bool, use_cuda: bool):
        """The spec as TRL's SFTConfig."""
        from trl import SFTConfig

        return SFTConfig(**self._common_args(has_val, use_cuda), max_length=self.spec.max_seq_len, packing=False,
                         dataset_num_proc=None, remove_unused_columns=True,
                         **grouping(SFTConfig, self.spec.group_by_length))

    def _events_callback(self):
        """Trainer logs → forge events; the stop flag → a checkpoint and a clean stop; NaN → failed."""
        from transformers import TrainerCallback

        recipe = self

        class Events(TrainerCallback):
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
                                   grad_norm=logs.get("grad_norm"), tokens_per_s=round(tps, 1) if tokens else None,
                                   tokens=tokens, eta_s=round(eta, 1) if eta is not None else None,
                                   max_steps=state.max_steps, epoch=logs.get("epoch"), **rewards(logs))
                    self.t_last, self.tokens_last = now, tokens
                    if not math.isfinite(loss):
                        recipe.failure = f"loss became {loss} at step {state.global_step}; lower the learning rate"
                        control.should_training_stop = True
                        control.should_save = False
                if "eval_loss" in logs:
                    recipe.log.log("eval", step=state.global_step, eval_loss=float(logs["eval_loss"]),
                                   **rewards(logs, "eval_"))

            def on_save(self, args, state, control, **kw):
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.exists() and recipe.rank == 0:
                    _fault("checkpoint")  # the checkpoint is written, its marker not yet
                    write_marker(ckpt, state.global_step)
                    recipe.log.log("checkpoint", step=state.global_step, path=str(ckpt))

        return Events()

    def _trainer_class(self):
        """SFTTrainer that counts padding and computes the plain causal-LM loss (at answer positions)."""
        from transformers import Trainer
        from trl import SFTTrainer

        spec, padding = self.spec, self.padding

        class ForgeSFTTrainer(SFTTrainer):
            def get_train_dataloader(self):
                # Count real and padded tokens of every training batch (the run's padding share).
                collate = self.data_collator
                self.data_collator = padding.wrap(collate)
                try:
                    return super().get_train_dataloader()
                finally:
                    self.data_collator = collate

            def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
                # The plain causal-LM loss of transformers' Trainer: TRL's chunked lm-head pass that also
                # computes entropy and token accuracy for its logs costs ~35% throughput on a CPU, for metrics
                # forge does not show.
                inputs["use_cache"] = False
                if return_outputs or not label_positions_supported(model):
                    result = Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs, **kwargs)
                else:
                    result = label_positions_loss(self, model, inputs, kwargs.get("num_items_in_batch"))
                nan_at = spec.fault_nan_at_step
                if nan_at is not None and self.state.global_step + 1 >= nan_at:
                    if return_outputs:
                        return result[0] * float("nan"), result[1]
                    return result * float("nan")
                return result

        return ForgeSFTTrainer

    def log_padding(self) -> float | None:
        share = self.padding.share()
        if share is None:
            return None
        how = "length-grouped" if self.spec.group_by_length else "random order"
        self.log.log("info", message=f"padding share {share:.0%} ({how}): {self.padding.pad} padding tokens of "
                                     f"{self.padding.total} in the training batches", padding_share=round(share, 4))
        return round(share, 4)

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
        model = self.trainer.model
        if "ref" in getattr(model, "peft_config", {}):  # DPO/KTO's frozen reference copy stays out of the adapter
            model.save_pretrained(tmp, selected_adapters=["default"])
        else:
            model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        (tmp / "chat_template.jinja").write_text(self.tokenizer.chat_template or "")
        (tmp / "forge_adapter.json").write_text(json.dumps({
            "base_model": self.spec.base_model, "base_path": self.base_path, "backend": self.backend,
            "step": self.trainer.state.global_step, "method": self.spec.method, "from_run": self.spec.from_run}))
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
            summary["padding_share"] = self.log_padding()
            summary["forgetting"] = self.write_forgetting()
            summary["max_seq_len"] = self.spec.max_seq_len
        self.set_status("stopped" if self.stop_requested else "completed", **summary)


def recipe_main(run_dir: str, resume: bool = False) -> int:
    recipe = Recipe(Path(run_dir), resume)
    try:
        recipe.setup()
        recipe.train()
        recipe.cleanup()
    except ForgeError as e:  # RunFailed, SpecError, BaseModelError: a message for the user, no traceback
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
