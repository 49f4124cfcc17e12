"""The training recipe: fine-tune a student on teacher samples, in one readable loop.

    setup(resume_from) -> train() -> save_checkpoint(step) -> cleanup()

Run it standalone in one process::

    python -m cotdistill.trainer.recipe CONFIG.yaml [hyperparameters.max_steps=100 ...]

where CONFIG.yaml holds a :class:`~cotdistill.trainer.config.RecipeConfig` (an example is in
docs/trainer.md, "Recipe"); ``resume_from=CHECKPOINT_DIR`` continues a run.

The trainer service runs the same class inside Ray Train workers,
plugging :class:`DistributedHooks` (DDP wrapping, data sharding, rank) and a :class:`Reporter`
(events, cancellation); nothing else differs between one process and many.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from cotdistill.common.alignment import Aligner
from cotdistill.common.errors import InvalidArgument
from cotdistill.common.lm import context_length, ensure_pad_token, pad_id, tokenizer_content_hash
from cotdistill.common.lm.loading import load_model, load_tokenizer
from cotdistill.common.samples import ShardMetadata
from cotdistill.trainer import checkpoints as ckpt
from cotdistill.trainer.chunked_loss import auto_chunk_rows, chunked_head_objective
from cotdistill.trainer.config import RecipeConfig, detect_kind
from cotdistill.trainer.data import (
    IGNORE,
    BatchList,
    Example,
    ExampleBuilder,
    build_batches,
    load_samples,
    teacher_tokenizer_ref,
)
from cotdistill.trainer.objectives import ObjectiveConfig, distillation_objective
from cotdistill.trainer.on_policy import is_on_policy_step
from cotdistill.trainer.rollouts import Rollouts, build_rollouts

log = logging.getLogger("cotdistill.trainer.recipe")


# ---- what the service plugs in --------------------------------------------------------------


class Reporter(Protocol):
    """Receives the run's progress; the service turns these into WatchRun events."""

    def on_step(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        """metrics: loss, sft, kd (when used), learning_rate, tokens_per_second, grad_norm."""

    def on_checkpoint(self, step: int, path: str, validation_loss: float | None, is_best: bool) -> None: ...

    def on_validation(self, step: int, metrics: dict[str, float]) -> None: ...

    def should_stop(self) -> bool:
        """True asks the loop to stop before its next micro-batch (cancellation, shutdown).

        Asked once per micro-batch on every rank (the Ray reporter makes it a collective).
        """
        ...

    def on_phase(self, name: str, detail: str) -> None:
        """What the run is doing before training: loading_model, loading_data, first_step.

        Optional: the recipe calls it only on reporters that have it.
        """


class LogReporter:
    """Default reporter: log lines, never stops."""

    def on_step(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        parts = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        log.info("step %d/%d %s", step, total_steps, parts)

    def on_checkpoint(self, step: int, path: str, validation_loss: float | None, is_best: bool) -> None:
        log.info("checkpoint step=%d path=%s validation_loss=%s best=%s", step, path, validation_loss, is_best)

    def on_validation(self, step: int, metrics: dict[str, float]) -> None:
        log.info("validation step=%d %s", step, metrics)

    def should_stop(self) -> bool:
        return False

    def on_phase(self, name: str, detail: str) -> None:
        log.info("phase %s %s", name, detail)


_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest: allocations below it are reused from the heap
TOP_PAD_BYTES = 256 << 20


def tune_allocator() -> bool:
    """Few arenas, heap reuse for tensors up to 32 MiB, and freed memory handed back (Linux/glibc).

    Each step allocates and frees a batch's activations (2 GB for SmolLM2-135M at batch 8). glibc
    by default gives each allocating thread its own arena and keeps freed memory, so the resident
    set grows past the live data; returning everything at once (trim threshold 0, which also pins
    the mmap threshold at 128 KiB) made every activation a fresh mapping whose pages fault in again
    each step: 9.6-11.4 M minor faults and 16-20 s of kernel time over 5 SmolLM2 steps, against
    3.9 M faults for a plain PyTorch loop. Serving allocations below 32 MiB from the heap (reused
    across steps) and growing it 256 MiB at a time cut that to 2.1 M faults and 4 s, at a peak
    RSS of 5.1 GB (1.2x weights + gradients + AdamW + one batch's activations; bench
    trainer_memory). The trainer service sets the same through the environment of its Ray
    workers (``ray_runner.WORKER_MALLOC_ENV``) so that arenas made before this call obey it too.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(name)
        settings = (
            (_M_ARENA_MAX, 2),
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (_M_TOP_PAD, TOP_PAD_BYTES),
            (_M_TRIM_THRESHOLD, 0),
        )
        return all(bool(libc.mallopt(param, value)) for param, value in settings)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def make_adamw(params: list[nn.Parameter], *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW, fused where torch has a fused kernel for the parameters' device and dtype.

    On CPU the default multi-tensor ("foreach") AdamW allocates several parameter-sized
    temporaries per step: on a 135M-parameter student it measured 1.9-16 s a step on this
    2-core machine against 0.1 s for the fused kernel, the same update in one pass.
    """
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@dataclass
class DistributedHooks:
    """How the loop meets a distributed runtime; the defaults are one process.

    The service passes e.g. ``prepare_model=ray.train.torch.prepare_model``,
    ``prepare_data_loader=ray.train.torch.prepare_data_loader`` and the worker's rank.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device | None = None  # None: CUDA when available, else CPU

    def prepare_model(self, model: nn.Module) -> nn.Module:
        return model

    def prepare_data_loader(self, loader: Any) -> Any:
        return loader


# ---- the student's forward pass ---------------------------------------------------------------


class StudentLM(nn.Module):
    """Wraps a Hugging Face model so that its forward pass returns the objective of a micro-batch.

    forward(batch, select) -> (loss, parts) over the N positions ``select`` (``labels != -100``).
    For plain causal LMs the LM head runs only on those N hidden states (prompt and padding
    positions never reach the (., V) projection), ``chunk_rows`` of them at a time with the
    loss and its gradient computed per chunk (:mod:`.chunked_loss`), so no (N, V) fp32 tensor
    is ever whole. The objective is inside ``forward`` because this module is what DDP/FSDP wrap:
    FSDP gathers the head's weight only within the wrapped forward.
    """

    def __init__(
        self,
        model: nn.Module,
        encoder_decoder: bool,
        objective: ObjectiveConfig | None = None,
        chunk_rows: int = 0,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.encoder_decoder = encoder_decoder
        self.objective = objective or ObjectiveConfig()
        self.compute_dtype = compute_dtype
        hf = self.hf_model
        config = getattr(hf, "config", None)
        # Heads with extra logit transforms (softcapping, scaling) go through the model's own forward.
        self.fast_head = (
            not encoder_decoder
            and getattr(config, "final_logit_softcapping", None) is None
            and not hasattr(hf, "logit_scale")
            and hf.get_output_embeddings() is not None
            and hasattr(hf, getattr(hf, "base_model_prefix", "") or "_none_")
        )
        self.vocab_size = int(getattr(config, "vocab_size", 0) or 0)
        self.chunk_rows = chunk_rows  # 0: chosen per device at the first forward pass

    @property
    def hf_model(self) -> Any:
        """The Hugging Face model (inside a peft wrapper for LoRA: its modules carry the adapters)."""
        model: Any = self.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def forward(
        self, batch: dict[str, torch.Tensor], select: torch.Tensor, objective: ObjectiveConfig | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch: collated tensors (B, T); select: (N,) flat indices into B*T; objective: the
        run's unless given (on-policy steps use their divergence alone). Returns (loss, parts)."""
        objective = objective or self.objective
        labels = batch["labels"].flatten()[select]
        kd_ids = kd_lps = None
        if objective.kd_weight > 0:
            kd_ids = batch["kd_ids"].flatten(0, 1)[select].long()
            kd_lps = batch["kd_logprobs"].flatten(0, 1)[select].float()
        if not self.fast_head:
            logits = self.logits(batch, select)
            return distillation_objective(logits, labels, kd_ids, kd_lps, objective)
        hf = self.hf_model
        backbone = getattr(hf, hf.base_model_prefix)
        hidden = backbone(**self._decoder_inputs(batch)).last_hidden_state.flatten(0, 1)[select]
        head = hf.get_output_embeddings()
        if not self.chunk_rows:
            self.chunk_rows = auto_chunk_rows(self.vocab_size or int(head.weight.shape[0]), hidden.device)
        return chunked_head_objective(
            hidden,
            head.weight,
            getattr(head, "bias", None),
            labels,
            kd_ids,
            kd_lps,
            objective,
            chunk_rows=self.chunk_rows,
            compute_dtype=self.compute_dtype,
        )

    def logits(self, batch: dict[str, torch.Tensor], select: torch.Tensor) -> torch.Tensor:
        """(N, V) logits at ``select`` through the model's own forward (T5, softcapped heads)."""
        if self.encoder_decoder:
            out = self.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                decoder_input_ids=batch["decoder_input_ids"],
                decoder_attention_mask=batch["decoder_attention_mask"],
                use_cache=False,
            )
            return out.logits.flatten(0, 1)[select]
        return self.model(**self._decoder_inputs(batch)).logits.flatten(0, 1)[select]

    @staticmethod
    def _decoder_inputs(batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "input_ids": batch["input_ids"],
            "position_ids": batch["position_ids"],
            # None + restarting position_ids = packed rows: HF builds a block-diagonal causal mask.
            "attention_mask": batch.get("attention_mask"),
            "use_cache": False,
        }


def lr_lambda(schedule: str, warmup: int, total: int) -> Any:
    """Multiplier of the peak learning rate at a given optimizer step (0-based)."""

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _find_sampler(loader: Any) -> Any:
    for obj in (loader, getattr(loader, "_dataloader", None)):
        sampler = getattr(obj, "sampler", None)
        if sampler is not None:
            return sampler
    return None


def _unwrap(module: nn.Module) -> nn.Module:
    """The Hugging Face (or peft) model inside DDP/FSDP and StudentLM wrappers."""
    while True:
        if isinstance(module, StudentLM):
            return module.model
        inner = getattr(module, "module", None)
        if isinstance(inner, nn.Module):
            module = inner
            continue
        return module


@dataclass
class LoopState:
    """Counters that make a run resumable: where the data order and the schedule stand."""

    step: int = 0  # optimizer steps done
    micro_step: int = 0  # micro-batches done (across epochs)
    epoch: int = 0
    batch_in_epoch: int = 0  # micro-batches of this epoch already consumed
    best_validation_loss: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---- the recipe -------------------------------------------------------------------------------


class TrainRecipe:
    """Fine-tunes one student; see the module docstring for the life cycle."""

    def __init__(
        self, config: RecipeConfig, reporter: Reporter | None = None, hooks: DistributedHooks | None = None
    ) -> None:
        self.config = config
        self.reporter: Reporter = reporter or LogReporter()
        self.hooks = hooks or DistributedHooks()
        self.device = self.hooks.device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.state = LoopState()
        self.stopped = False
        self.total_steps = 0
        self.data_stats: dict[str, Any] = {}
        self.rollouts: Rollouts | None = None  # on-policy micro-batches (config.on_policy)

    # ---- setup ----------------------------------------------------------------------------

    def setup(self, resume_from: str | None = None) -> None:
        """Load the student, build the data, optimizer and schedule; restore a checkpoint if given."""
        cfg = self.config
        cfg.validate()
        tune_allocator()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        hp = cfg.hyperparameters
        self._seed_everything(hp.seed)
        self.encoder_decoder = detect_kind(cfg.student.model) == "encoder_decoder"
        self._phase("loading_model", Path(cfg.student.model).name)
        self.tokenizer = self._load_tokenizer()
        model = self._load_model(resume_from)
        self.student_vocab_size = int(model.get_input_embeddings().num_embeddings)
        self._phase("loading_data", f"{len(cfg.data.train_paths)} path(s)")
        self.train_loader, self.val_batches = self._build_data(model)
        obj = self.weights = cfg.objective
        student = StudentLM(
            model,
            self.encoder_decoder,
            self.weights,
            chunk_rows=hp.loss_chunk_tokens,
            compute_dtype=torch.bfloat16 if hp.precision == "bf16" else None,
        )
        self.model = self.hooks.prepare_model(student.to(self.device))
        self.train_loader = self.hooks.prepare_data_loader(self.train_loader)
        steps_per_epoch = max(1, len(self.train_loader) // hp.gradient_accumulation)
        self.total_steps = hp.max_steps or max(1, math.ceil(hp.epochs * steps_per_epoch))
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_adamw(params, lr=hp.learning_rate, weight_decay=hp.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(hp.schedule, hp.warmup_steps, self.total_steps)
        )
        op = cfg.on_policy
        if op.enabled:
            # On-policy steps: the divergence alone, on the student's samples (no NLL of its own text).
            self.on_policy_weights = ObjectiveConfig(
                sft_weight=0.0, kd_weight=1.0, divergence=op.divergence, top_k_mass=obj.top_k_mass, jsd_beta=op.jsd_beta
            )
            self.rollouts = build_rollouts(
                cfg, self.tokenizer, self.student_vocab_size, self._samples, self._metadata, rank=self.hooks.rank
            )
        if resume_from:
            self._restore(resume_from)

    def _phase(self, name: str, detail: str = "") -> None:
        """Tell the reporter what the run is doing before its first step (WatchRun shows it)."""
        on_phase = getattr(self.reporter, "on_phase", None)
        if on_phase is not None:
            on_phase(name, detail)

    def _seed_everything(self, seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _load_tokenizer(self) -> Any:
        tok = load_tokenizer(self.config.student.tokenizer or self.config.student.model)
        ensure_pad_token(tok)  # batches pad through it; checkpoints carry it
        return tok

    def _load_model(self, resume_from: str | None) -> Any:
        cfg = self.config
        lora = cfg.student.lora
        # A full fine-tune resumes from the checkpoint's weights; LoRA from the base + saved adapter.
        source = resume_from if resume_from and lora is None else cfg.student.model
        # A LoRA run never updates the base: in bf16 precision it is stored in bf16 (half the
        # memory, and autocast has nothing to re-cast each step); adapters stay fp32 (peft).
        frozen_bf16 = lora is not None and cfg.hyperparameters.precision == "bf16"
        model = load_model(source, dtype=torch.bfloat16 if frozen_bf16 else torch.float32)  # safetensors only
        if cfg.hyperparameters.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora is not None:
            from peft import LoraConfig, PeftModel, TaskType, get_peft_model

            if resume_from:
                model = PeftModel.from_pretrained(model, str(Path(resume_from) / "adapter"), is_trainable=True)
            else:
                peft_config = LoraConfig(
                    r=lora.rank,
                    lora_alpha=lora.alpha,  # type: ignore[arg-type]  # peft annotates int, uses it as a float
                    lora_dropout=lora.dropout,
                    target_modules=lora.target_modules or "all-linear",
                    task_type=TaskType.SEQ_2_SEQ_LM if self.encoder_decoder else TaskType.CAUSAL_LM,
                )
                model = get_peft_model(model, peft_config)
        return model

    def _teacher_tokenizer(self, metadata: ShardMetadata) -> tuple[Any, int | None]:
        """The teacher's tokenizer for alignment (config, then shard metadata), and its vocab size."""
        ref = teacher_tokenizer_ref(self.config.data.teacher_tokenizer, metadata.teacher)
        if ref.path is not None:
            return load_tokenizer(ref.path), ref.vocab_size
        if ref.content_hash and ref.content_hash == tokenizer_content_hash(self.tokenizer):
            return self.tokenizer, ref.vocab_size  # same tokenizer: alignment is the identity
        raise InvalidArgument(
            "data.teacher_tokenizer",
            "objective.kd_weight > 0 needs the teacher's tokenizer to align its top-k and the samples do not name "
            "a local one (or record the student's tokenizer hash): set data.teacher_tokenizer",
        )

    def _build_data(self, model: nn.Module) -> tuple[torch.utils.data.DataLoader[Any], list[dict[str, torch.Tensor]]]:
        cfg, hp = self.config, self.config.hyperparameters
        samples, metadata = load_samples(cfg.data.train_paths, only_correct=cfg.data.only_correct)
        self._samples, self._metadata = samples, metadata  # on-policy questions come from here too
        top_k, aligner = 0, None
        if cfg.objective.kd_weight > 0:
            ks = {s.teacher.top_ids.shape[1] for s in samples if s.teacher is not None}
            if not ks or max(ks) == 0:
                raise InvalidArgument("objective.kd_weight", "> 0 but the samples carry no top-k logprobs")
            if len(ks) > 1:
                raise InvalidArgument("data.train_paths", f"samples disagree on top-k size: {sorted(ks)}")
            top_k = ks.pop()
            teacher_tok, teacher_vocab = self._teacher_tokenizer(metadata)
            aligner = Aligner(teacher_tok, self.tokenizer, self.student_vocab_size, teacher_vocab)
        max_len = cfg.data.max_seq_len or context_length(model.config)
        config = getattr(model, "config", None)
        builder_args: dict[str, Any] = {
            "fmt": cfg.data.format,
            "encoder_decoder": self.encoder_decoder,
            "max_seq_len": max_len,
            "aligner": aligner,
            "top_k": top_k,
            "decoder_start_id": int(getattr(config, "decoder_start_token_id", 0) or 0),
        }
        builder = ExampleBuilder(
            self.tokenizer, answer_only_fraction=cfg.data.answer_only_fraction, seed=hp.seed, **builder_args
        )
        examples = builder.build(samples)
        if not examples:
            raise InvalidArgument("data.max_seq_len", f"all {len(samples)} examples are longer than {max_len} tokens")
        self.data_stats = {
            "examples": len(examples),
            "dropped_too_long": builder.stats.dropped_too_long,
            "answer_only": builder.stats.answer_only,
            "kd_tokens": builder.stats.kd_tokens,
            "kd_matched_tokens": builder.stats.kd_matched_tokens,
        }
        log.info("training data: %s", self.data_stats)
        self.top_k = top_k
        batches = self._batches(examples, hp.seed)
        generator = torch.Generator()
        generator.manual_seed(hp.seed)
        self._generator = generator
        loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
            BatchList(batches), batch_size=None, shuffle=True, generator=generator
        )
        val_batches: list[dict[str, torch.Tensor]] = []
        if cfg.data.validation_paths:
            val_samples, _ = load_samples(
                cfg.data.validation_paths, only_correct=False, field_name="data.validation_paths"
            )
            val_builder = ExampleBuilder(self.tokenizer, answer_only_fraction=0.0, seed=hp.seed, **builder_args)
            val_batches = self._batches(val_builder.build(val_samples), hp.seed)
        return loader, val_batches

    def _batches(self, examples: list[Example], seed: int) -> list[dict[str, torch.Tensor]]:
        return build_batches(
            examples,
            batch_size=self.config.hyperparameters.batch_size,
            packing=self.config.data.packing,
            pad_id=pad_id(self.tokenizer),
            seed=seed,
            top_k=self.top_k,
            encoder_decoder=self.encoder_decoder,
        )

    # ---- train ----------------------------------------------------------------------------

    def _epoch_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """This epoch's micro-batches from the saved position on (deterministic per epoch)."""
        epoch = self.state.epoch
        sampler = _find_sampler(self.train_loader)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self._generator.manual_seed(self.config.hyperparameters.seed + epoch)
        return itertools.islice(iter(self.train_loader), self.state.batch_in_epoch, None)

    def _loss(
        self, batch: dict[str, torch.Tensor], weights: ObjectiveConfig | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        """Objective of one micro-batch (``weights``: the run's unless given); returns (loss, parts,
        supervised tokens)."""
        weights = weights or self.weights
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        select = (batch["labels"].flatten() != IGNORE).nonzero().squeeze(1)
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.config.hyperparameters.precision == "bf16"
            else nullcontext()
        )
        with autocast:
            loss, parts = self.model(batch, select, weights)
        return loss, parts, int(select.numel())

    def train(self) -> None:
        """Run optimizer steps until ``total_steps`` or until the reporter asks to stop.

        ``Reporter.should_stop()`` is asked before every micro-batch, so a cancellation waits for
        at most one micro-batch, not a whole gradient-accumulation window. Stopping inside a
        window drops its partial gradients and rewinds the loop counters to the last optimizer
        step, so a checkpoint taken then resumes exactly there.
        """
        hp, ck = self.config.hyperparameters, self.config.checkpoints
        accum = hp.gradient_accumulation
        self.model.train()
        window_tokens, window_start = 0, time.perf_counter()
        sums: dict[str, float] = {}
        at_boundary = copy.deepcopy(self.state)
        if self.state.step == 0:
            self._phase("first_step", f"{self.total_steps} steps, {accum} micro-batch(es) each")
        figures: dict[str, float] = {}  # on-policy figures, summed over on-policy micro-batches
        while self.state.step < self.total_steps and not self.stopped:
            for batch in self._epoch_batches():
                if self.reporter.should_stop():
                    if self.state.micro_step % accum:
                        self.state = at_boundary  # drop the partial window: resume at the step boundary
                        self.optimizer.zero_grad(set_to_none=True)
                    self.stopped = True
                    break
                self.state.batch_in_epoch += 1
                self.state.micro_step += 1
                boundary = self.state.micro_step % accum == 0
                # GKD: a step on the student's own samples takes the place of a data step.
                on_policy = self.rollouts is not None and is_on_policy_step(
                    self.state.step, self.config.on_policy.fraction, hp.seed
                )
                if on_policy:
                    assert self.rollouts is not None
                    batch, found = self.rollouts.batch(_unwrap(self.model), self.state.step, self.state.micro_step)
                    for name, figure in found.items():
                        figures[name] = figures.get(name, 0.0) + figure
                    figures["on_policy_micro_batches"] = figures.get("on_policy_micro_batches", 0.0) + 1
                # DDP: sync gradients only on the micro-batch that ends an optimizer step.
                model: Any = self.model
                sync = nullcontext() if boundary or not hasattr(model, "no_sync") else model.no_sync()
                with sync:
                    loss, parts, _ = self._loss(batch, self.on_policy_weights if on_policy else None)
                    (loss / accum).backward()
                window_tokens += int(batch["num_tokens"])
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) / accum
                if on_policy:
                    figures["on_policy_loss"] = figures.get("on_policy_loss", 0.0) + float(parts["kd"])
                else:
                    for name, value in parts.items():
                        sums[name] = sums.get(name, 0.0) + float(value) / accum
                if not boundary:
                    continue
                grad_norm = self._optimizer_step(hp.max_grad_norm)
                self.state.step += 1
                step = self.state.step
                if step % self.config.log_every_steps == 0 or step == self.total_steps:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    n = self.config.log_every_steps if step % self.config.log_every_steps == 0 else 1
                    metrics = {name: value / n for name, value in sums.items()}
                    metrics.update(
                        learning_rate=float(self.scheduler.get_last_lr()[0]),
                        tokens_per_second=window_tokens * self.hooks.world_size / elapsed,
                        grad_norm=grad_norm,
                    )
                    if self.rollouts is not None:
                        metrics.update(self._on_policy_figures(figures, n * accum))
                    self.reporter.on_step(step, self.total_steps, metrics)
                    window_tokens, window_start, sums, figures = 0, time.perf_counter(), {}, {}
                validation_loss = None
                if self.val_batches and ck.validation_interval_steps and step % ck.validation_interval_steps == 0:
                    validation_loss = self.validate()
                if ck.interval_steps and step % ck.interval_steps == 0 and step < self.total_steps:
                    self.save_checkpoint(step, validation_loss=validation_loss)
                at_boundary = copy.deepcopy(self.state)
                if step >= self.total_steps:
                    break
            else:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
        if not self.stopped:
            self.save_checkpoint(self.state.step)

    def _on_policy_figures(self, figures: dict[str, float], micro_batches: int) -> dict[str, float]:
        """A logging window's on-policy figures: the share of its micro-batches on student
        samples, per-micro-batch means of the rollout figures, and the Score client's stats."""
        assert self.rollouts is not None
        count = figures.pop("on_policy_micro_batches", 0.0)
        out = {"on_policy_fraction": count / max(1, micro_batches)}
        out.update({name: value / count for name, value in figures.items()} if count else {})
        out.update(self.rollouts.scorer.stats.take())
        return out

    def _optimizer_step(self, max_grad_norm: float) -> float:
        """Clip (when > 0), step, schedule; returns the gradient norm before clipping."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm if max_grad_norm > 0 else float("inf"))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @torch.no_grad()
    def validate(self) -> float:
        """Token-weighted mean objective on the validation batches; reports it; returns it."""
        was_training = self.model.training
        self.model.eval()
        totals: dict[str, float] = {}
        tokens = 0
        for batch in self.val_batches:
            loss, parts, n = self._loss(batch)
            tokens += n
            totals["validation_loss"] = totals.get("validation_loss", 0.0) + float(loss) * n
            for name, value in parts.items():
                totals[f"validation_{name}"] = totals.get(f"validation_{name}", 0.0) + float(value) * n
        self.model.train(was_training)
        metrics = {k: v / max(tokens, 1) for k, v in totals.items()}
        self.reporter.on_validation(self.state.step, metrics)
        return metrics["validation_loss"]

    # ---- checkpoints --------------------------------------------------------------------

    def save_checkpoint(self, step: int, validation_loss: float | None = None) -> str:
        """Save model, tokenizer, config and loop state atomically (rank 0); returns the path.

        Computes the validation loss first when there is validation data and none was given.
        Other ranks write nothing and return "".
        """
        if validation_loss is None and self.val_batches:
            validation_loss = self.validate()
        if self.hooks.rank != 0:
            return ""
        best = self.state.best_validation_loss
        is_best = validation_loss is not None and (best is None or validation_loss <= best)
        if is_best:
            self.state.best_validation_loss = validation_loss
        trainer_state = {
            "loop": self.state.__dict__.copy(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
            },
        }
        info = {
            "step": step,
            "total_steps": self.total_steps,
            "validation_loss": validation_loss,
            "config": self.config.model_dump(mode="json"),
            "data": self.data_stats,
        }
        path = ckpt.save_checkpoint(
            self.config.output_dir,
            step,
            model=_unwrap(self.model),
            tokenizer=self.tokenizer,
            trainer_state=trainer_state,
            info=info,
        )
        ckpt.apply_retention(self.config.output_dir, self.config.checkpoints.keep_last)
        self.reporter.on_checkpoint(step, path, validation_loss, is_best)
        return path

    def _restore(self, path: str) -> None:
        """Restore optimizer, schedule, counters and RNG from a checkpoint (weights already loaded)."""
        state = ckpt.load_trainer_state(path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = LoopState(**state["loop"])
        rng = state.get("rng", {})
        if rng:
            random.setstate(rng["python"])
            np.random.set_state(rng["numpy"])
            torch.set_rng_state(rng["torch"])
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)",
            path,
            self.state.step,
            self.state.epoch,
            self.state.batch_in_epoch,
        )

    def cleanup(self) -> None:
        """Release the model, optimizer and data (the process may train another run next)."""
        if self.rollouts is not None:
            self.rollouts.scorer.close()
            self.rollouts = None
        for name in ("model", "optimizer", "scheduler", "train_loader", "val_batches", "_samples"):
            if hasattr(self, name):
                delattr(self, name)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    """``python -m cotdistill.trainer.recipe CONFIG.yaml [key=value ...]``: train in this process."""
    from cotdistill.common.config import load_config
    from cotdistill.common.errors import ConfigError

    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(main.__doc__)
        return 0 if args else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    resume = None
    rest = []
    for a in args[1:]:
        if a.startswith("resume_from="):
            resume = a.split("=", 1)[1]
        else:
            rest.append(a)
    try:
        config = load_config(RecipeConfig, args[0], rest)
        recipe = TrainRecipe(config)
        recipe.setup(resume_from=resume)
    except (ConfigError, InvalidArgument) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
