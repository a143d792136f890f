"""The train spec: every choice a run makes, validated, stored as spec.json in the run directory.

The defaults are the CPU demo: they finish on a 2-core laptop in minutes with the bundled SmolLM2-135M.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from forge.errors import ForgeError, format_validation_error
from forge.models.base_model import DEFAULT_BASE

# Attention and MLP projections per architecture (model_type in config.json).
TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "granite": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],  # Gemma 3 270M
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}
FALLBACK_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class SpecError(ForgeError, ValueError):
    """The spec is invalid; the message names the field."""


class Decoding(BaseModel):
    """How the trained model samples unless a request says otherwise: written into its GGUF (`forge.decoding`) and
    Ollama Modelfile by `forge export`, used by the companion and by Eval alike."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    temperature: float | None = Field(default=None, ge=0, le=2)
    """0 is greedy."""

    top_p: float | None = Field(default=None, gt=0, le=1)
    """Nucleus sampling: the smallest set of tokens whose probability reaches top_p."""

    top_k: int | None = Field(default=None, ge=0)
    """Sample among the k likeliest tokens (0: all)."""

    min_p: float | None = Field(default=None, ge=0, le=1)
    """Drop tokens less likely than min_p × the likeliest."""

    repeat_penalty: float | None = Field(default=None, gt=0, le=5)
    """Above 1 makes tokens already in the context less likely: small models loop without it."""

    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    """OpenAI's presence penalty."""

    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    """OpenAI's frequency penalty."""

    seed: int | None = None
    """Seed for sampling at temperature > 0: the same prompt then gets the same answer."""


class TrainSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    base_model: str = DEFAULT_BASE
    """A base id `forge models bases` lists (`smollm2-135m-instruct`, bundled; `gemma3-270m` with the gemma extra;
    any `forge models add-base` registered), a local HF model folder, or a hub id when online."""

    method: Literal["sft", "dpo", "kto", "orpo"] = "sft"
    """sft: supervised fine-tuning on the approved examples. dpo: Direct Preference Optimization on preference
    pairs (chosen vs rejected answers to one prompt: your edits of machine-written answers, your Eval votes,
    imported pairs, your notes vs the model's own drafts). kto: Kahneman-Tversky Optimization on answers
    labelled good or bad (approved / rejected examples, imported labels). orpo: Odds Ratio Preference Optimization
    on the same pairs, with no reference model (TRL's experimental ORPOTrainer). TRL's trainers; the run folder's
    data/preferences/ holds the records (`forge dataset export --preferences`)."""

    from_run: str | None = None
    """Start from a finished run's LoRA adapter (its id) instead of a fresh one: DPO/KTO on top of an SFT run.
    The reference model is the same weights with the adapter switched off, so no second copy is loaded."""

    beta: float = Field(default=0.1, gt=0)
    """DPO/KTO β: how far the tuned model may move from the reference (higher: less)."""

    precompute_ref: bool = True
    """DPO/KTO: compute the reference's log-probabilities of every record once, before the first step (TRL's
    precompute_ref_log_probs; with from_run the reference is still the starting adapter), instead of a reference
    forward pass in every step: a DPO step 2.5× an SFT step instead of 3.3× on this CPU (benchmarks/bench_train.py
    --method dpo), the same arithmetic in one pass. false: at every step."""

    preference_data: dict | None = None
    """Filled in when a dpo/kto run is created: its records per split and by source (edit, vote, import,
    self-play; approve, reject, …), as the export's manifest says (not an input)."""

    sft_weight: float = Field(default=1.0, ge=0)
    """DPO only: the weight of a supervised loss on the chosen answers, added to DPO's (TRL's loss_type
    ["sigmoid", "sft"], as in RPO, Pang et al. 2024). Plain DPO (0) lowers the chosen answers' likelihood along
    with the rejected ones': in `forge demo --task preferences` it removed the filler but broke the answers'
    format (exact match 0.43 → 0.00)."""

    report_to: list[str] = Field(default_factory=list)
    """Also report the run to trackers through transformers' report_to: tensorboard, mlflow, trackio, wandb
    (each needs its package; `pip install -e '.[trackers]'` for TensorBoard). forge's own events stay the
    source of the TUI's charts."""

    backend: Literal["auto", "peft", "unsloth"] = "auto"
    """auto picks Unsloth when it imports and CUDA is present, else PEFT+TRL."""

    lora_r: int = Field(default=16, gt=0)
    """LoRA rank."""

    lora_alpha: int = Field(default=32, gt=0)
    """LoRA scaling (alpha / r multiplies the update)."""

    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    """Dropout on the LoRA path."""

    neftune_alpha: float | None = Field(default=None, gt=0)
    """NEFTune (Jain et al. 2023): uniform noise of this scale (alpha / sqrt(length × width)) on the input
    embeddings while training, through transformers' neftune_noise_alpha; null trains without it. Meant to help a
    model generalise past the phrasings it saw (5 is the paper's usual value); on the reminders demo it left exact
    match where it was (0.82, README), so no recipe turns it on."""

    target_modules: list[str] | None = None
    """Modules that get adapters; null picks per architecture (Llama q/k/v/o + MLP, Phi-3 qkv_proj, ...)."""

    quantization: Literal["auto", "4bit", "none"] = "auto"
    """auto: 4-bit QLoRA (bitsandbytes nf4 + double quant) when CUDA is available, full-precision LoRA otherwise."""

    learning_rate: float = Field(default=1e-3, gt=0)
    """Peak learning rate."""

    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    """Learning-rate schedule."""

    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    """Fraction of steps spent warming up."""

    epochs: float = Field(default=1.0, gt=0)
    """Passes over the training split (ignored when max_steps is set)."""

    max_steps: int | None = Field(default=None, gt=0)
    """Stop after this many optimizer steps."""

    batch_size: int = Field(default=8, gt=0)
    """Examples per device step."""

    grad_accum: int = Field(default=1, gt=0)
    """Gradient accumulation steps (effective batch = batch_size × grad_accum × processes)."""

    max_seq_len: int | Literal["auto"] = "auto"
    """Longest sequence in tokens (the chat-templated conversation in the base model's tokens). "auto" picks it
    from the data when the run is created: the length that covers 98 % of the training examples, rounded up to a
    multiple of 32, no more than the model's context or max_tokens_per_batch. spec.json in the run
    folder records the number used and why (max_seq_len_reason). Longer examples follow `truncation`."""

    max_seq_len_reason: str | None = None
    """Filled in when the run is created: how max_seq_len was chosen (not an input)."""

    max_tokens_per_batch: int = Field(default=2048, gt=8)
    """Memory budget for "auto": tokens per device step. When batch_size rows of the chosen length exceed it, the
    run puts fewer rows in each step and accumulates gradients over more (the same effective batch); a length over
    the whole budget is capped. 2048 (4 rows of 512 tokens) keeps SmolLM2-135M within a few GB of RAM on a CPU
    (8 rows of 512 took 10 GB here). An explicit max_seq_len is not limited by it."""

    truncation: Literal["middle-of-user", "drop"] = "middle-of-user"
    """What happens to an example longer than max_seq_len. middle-of-user (default): tokens are cut from the
    middle of the longest user turn (then the next longest), replaced by a visible " […] " marker; the assistant
    turns are never cut, and an example that still does not fit is dropped. drop: the example is left out. Both
    are counted in the length report and the run's events."""

    group_by_length: bool = True
    """Batch examples of similar length together (transformers' LengthGroupedSampler), so less of each batch is
    padding; the run logs its padding share."""

    recipe: str | None = None
    """The recipe (forge/train/recipes.py) whose defaults this spec started from, or null."""

    eval_max_tokens: int | Literal["auto"] | None = None
    """Output budget the recipe suggests for `forge eval --max-tokens` ("auto": from the reference lengths)."""

    decoding: Decoding | None = None
    """Decoding defaults the exported model carries (temperature, top_p, top_k, min_p, repeat_penalty, penalties,
    seed): the companion uses them for what a request leaves unset, Eval uses them as the companion would, and
    the Ollama Modelfile gets them as PARAMETERs. null: greedy in the companion and Eval."""

    forgetting_check: bool = True
    """Measure the mean loss on a small general reference set with the base (adapter off) before training and
    with the adapter after, written to RUN_DIR/forgetting.json and shown by Eval."""

    forgetting_threshold: float = Field(default=0.3, ge=0)
    """Warn when the reference loss rises by more than this (nats per token, after − before)."""

    reference_data: str | None = None
    """A chat JSONL for the forgetting check; null uses data/reference/general.jsonl (40 general Q&A pairs)."""

    eval_steps: int = Field(default=20, gt=0)
    """Evaluate on the validation split every N steps."""

    save_steps: int = Field(default=20, gt=0)
    """Write a checkpoint every N steps."""

    logging_steps: int = Field(default=1, gt=0)
    """Log train loss every N steps."""

    seed: int = 42
    """Seed for data order and adapter init."""

    gradient_checkpointing: bool = False
    """Trade compute for memory (recomputes activations in the backward pass)."""

    num_processes: int = Field(default=1, gt=0)
    """More than one launches the runner with `accelerate launch` (DDP; DeepSpeed/FSDP via accelerate_config)."""

    accelerate_config: str | None = None
    """Path of an accelerate config file (DeepSpeed / FSDP) for multi-process runs."""

    num_threads: int | None = None
    """CPU threads for torch; null uses every core."""

    fault_nan_at_step: int | None = None
    """Testing only: replace the loss with NaN from this step on, to exercise the failure path."""

    @field_validator("report_to", mode="before")
    @classmethod
    def _trackers(cls, value):
        if value is None or value == "none":
            return []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        known = {"tensorboard", "mlflow", "trackio", "wandb"}
        for v in value:
            if v not in known:
                raise ValueError(f"unknown tracker {v!r}: use one of {', '.join(sorted(known))}")
        return value

    @model_validator(mode="after")
    def _check(self) -> "TrainSpec":
        if self.accelerate_config and not Path(self.accelerate_config).exists():
            raise ValueError(f"accelerate_config {self.accelerate_config!r} does not exist")
        return self

    @classmethod
    def load(cls, path: Path) -> "TrainSpec":
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise SpecError(f"{path}: cannot read the train spec: {e.strerror or e}") from None
        try:
            return cls.model_validate_json(text)
        except ValidationError as e:
            raise SpecError(format_validation_error(e, str(path), text)) from None

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.model_dump(), indent=2) + "\n")


TRACKER_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "mlflow": ("mlflow",), "trackio": ("trackio",),
                   "wandb": ("wandb",)}


def check_trackers(report_to: list[str]) -> None:
    """Refuse, in one line, a tracker whose package is not installed (transformers would fail mid-setup)."""
    import importlib.util

    for name in report_to:
        if not any(importlib.util.find_spec(m) for m in TRACKER_MODULES[name]):
            extra = " (pip install -e '.[trackers]')" if name == "tensorboard" else ""
            raise SpecError(f"report_to {name}: the {TRACKER_MODULES[name][0]} package is not installed: "
                            f"pip install {TRACKER_MODULES[name][0]}{extra}, or leave {name} out of report_to")


def default_targets(model_type: str) -> list[str]:
    return TARGET_MODULES.get(model_type, FALLBACK_TARGETS)


def pick_backend(spec: TrainSpec) -> tuple[str, str]:
    """(backend, one-line reason). Unsloth needs both the package and a CUDA GPU."""
    import importlib.util

    has_cuda = False
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        pass
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if spec.backend == "unsloth":
        if not (has_cuda and has_unsloth):
            raise SpecError("backend unsloth needs an NVIDIA GPU and the `gpu` extra (pip install -e '.[gpu]'); "
                            "use backend peft on this machine")
        return "unsloth", "asked for"
    if spec.backend == "peft":
        return "peft", "asked for"
    if has_cuda and has_unsloth:
        return "unsloth", "auto: CUDA and unsloth are available"
    why = "no CUDA GPU" if not has_cuda else "unsloth is not installed (the `gpu` extra)"
    return "peft", f"auto: PEFT+TRL because {why}"
