"""The demo's teacher: a tiny Llama trained from scratch on the synthetic tasks, cached by recipe.

This is setup, not the product path: the papers' teachers are large pretrained models; on 2 CPU
cores we train one in a few minutes with a plain loop (sizes and steps from
``shared/notes/TINY-MODELS.md``). Training text is the teacher's own prompt format
(``zero_shot_cot``) followed by a ground-truth rationale in one of the dataset's rationale styles
and an answer sentence, so sampled rationales are diverse and their answers extractable.

The result is a Hugging Face directory (``config.json``, ``model.safetensors``, tokenizer) that
the teacher service loads with ``COTDISTILL_TEACHER_MODEL``. It is cached under
``<cache>/teacher-<hash>`` where the hash covers the whole :class:`TeacherRecipe` and
:data:`RECIPE_VERSION`; a finished build writes ``recipe.json`` last, so a crash leaves no
half-cached model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cotdistill.common import tasks

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

RECIPE_VERSION = 2
"""Bump when the training code changes what a recipe produces (invalidates every cache entry).

2: batches are packed (same examples per step, no padding compute), not padded."""

ID_DATASETS = ("synthetic_arithmetic", "synthetic_last_letters", "synthetic_coin_flip")
_FAMILY = {
    "synthetic_arithmetic": "arithmetic",
    "synthetic_last_letters": "last_letters",
    "synthetic_coin_flip": "coin_flip",
}

Progress = Callable[[int, int, float], None]
"""Called as (step, total_steps, loss) during training."""


@dataclass(frozen=True)
class TeacherRecipe:
    """Everything that determines the teacher's weights (its hash names the cache entry)."""

    mixture: dict[str, float] = field(
        default_factory=lambda: {
            "synthetic_arithmetic": 0.65,
            "synthetic_last_letters": 0.25,
            "synthetic_coin_flip": 0.10,
        }
    )
    num_examples: int = 30_000
    steps: int = 1_700
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    vocab_size: int = 420
    seed: int = 0

    def key(self) -> str:
        """Short content hash of the recipe (the cache directory's suffix)."""
        blob = json.dumps({"v": RECIPE_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def teacher_text(example: tasks.Example) -> tuple[str, str]:
    """(prompt, completion) the teacher is trained on: its prompt format, a rationale, an answer sentence."""
    prompt = tasks.render_teacher_prompt("zero_shot_cot", example)
    rationale = (example.rationale or "").strip()
    if "the answer is" not in rationale.lower():
        rationale = f"{rationale} The answer is {example.answer}."
    return prompt, f" {rationale}"


def training_examples(recipe: TeacherRecipe) -> list[tasks.Example]:
    """Fresh generated questions (never a dev/test question of the ID datasets), shuffled."""
    rng = random.Random(recipe.seed)
    examples: list[tasks.Example] = []
    for name, share in recipe.mixture.items():
        held_out = {e.question for split in ("dev", "test") for e in tasks.load_dataset(name, split)}
        count = max(1, round(share * recipe.num_examples))
        spec = tasks.SYNTHETIC_TASKS[name]
        examples += tasks.generate_synthetic(
            _FAMILY.get(name, spec.family),
            count,
            seed=recipe.seed * 1000 + len(examples) + 17,
            steps=(spec.min_steps, spec.max_steps),
            exclude=held_out,
            templates=spec.templates,
        )
    rng.shuffle(examples)
    return examples


def build_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2 style) with one token per digit, as Llama/Qwen split numbers.

    Single-digit tokens let a tiny model learn sums digit by digit; merged digits ("27") would make
    every two-digit number its own symbol to memorize.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from cotdistill.pipeline.tiny_models import SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, len(alphabet) + len(SPECIAL_TOKENS) + 8),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def build_teacher(recipe: TeacherRecipe, cache_root: Path, progress: Progress | None = None) -> Path:
    """Return the teacher directory for ``recipe``, training it first when it is not cached."""
    out = cache_root / f"teacher-{recipe.key()}"
    if (out / "recipe.json").is_file():
        return out
    tmp = cache_root / f".teacher-{recipe.key()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    metrics = _train(recipe, tmp, progress)
    (tmp / "recipe.json").write_text(
        json.dumps({"version": RECIPE_VERSION, "recipe": dataclasses.asdict(recipe), **metrics}, indent=2)
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def pack_batch(batch: list[tuple[list[int], int]], pad_id: int) -> tuple[Any, Any, Any]:
    """(input_ids, position_ids, labels) of a batch packed into rows twice as wide as its longest example.

    batch: (token ids, prompt length) per example. First-fit decreasing puts the examples into as
    few rows as fit (a random batch of the teacher's mixed tasks is 45% padding when each example
    gets its own row); position ids restart at 0 for every example, which Hugging Face turns into
    block-diagonal causal attention, so no example sees another. Labels are -100 on prompts and
    padding; the first label of each example is a prompt token, so no loss crosses a boundary.
    (The trainer service packs the same way; the demo may not import a service.)
    """
    import torch

    width = 2 * max(len(ids) for ids, _ in batch)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(batch)), key=lambda i: -len(batch[i][0])):
        n = len(batch[i][0])
        fit = next((r for r, free in enumerate(room) if n <= free), None)
        if fit is None:
            rows.append([i])
            room.append(width - n)
        else:
            rows[fit].append(i)
            room[fit] -= n
    width_used = 0
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, members in enumerate(rows):
        pos = 0
        for i in members:
            ids, prompt_len = batch[i]
            n = len(ids)
            input_ids[r, pos : pos + n] = torch.tensor(ids)
            position_ids[r, pos : pos + n] = torch.arange(n)
            labels[r, pos + prompt_len : pos + n] = torch.tensor(ids[prompt_len:])
            pos += n
        width_used = max(width_used, pos)
        # Padding is its own short "sequence" (positions from 0), so nothing attends into it.
        position_ids[r, pos:] = torch.arange(width - pos)
    return input_ids[:, :width_used], position_ids[:, :width_used], labels[:, :width_used]


def _train(recipe: TeacherRecipe, out: Path, progress: Progress | None) -> dict[str, float]:
    import torch
    import transformers
    from transformers import LlamaForCausalLM

    from cotdistill.pipeline.tiny_models import build_causal_lm

    transformers.utils.logging.disable_progress_bar()
    # A 1M-parameter model stops scaling after a few threads; on 2 idle cores, 2 threads take
    # 0.33 s a step against 0.52 s for one (measured), which is what keeps a cold demo under 10 min.
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    torch.manual_seed(recipe.seed)
    pairs = [teacher_text(e) for e in training_examples(recipe)]
    tokenizer = build_tokenizer([p + c for p, c in pairs[:5000]], recipe.vocab_size)
    build_causal_lm(
        out,
        tokenizer,
        hidden_size=recipe.hidden_size,
        num_layers=recipe.num_layers,
        num_heads=recipe.num_heads,
        max_positions=256,
        seed=recipe.seed,
    )
    model = LlamaForCausalLM.from_pretrained(out)
    model.train()
    eos = int(tokenizer.eos_token_id)
    # Each row: prompt ids (no loss) + completion ids + EOS (loss); the loss is on the completion only.
    prompt_ids = tokenizer([p for p, _ in pairs], add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer([c for _, c in pairs], add_special_tokens=False)["input_ids"]
    rows = [(p + c + [eos], len(p)) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress_frac = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress_frac))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    rng = random.Random(recipe.seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    cursor, tokens, started, loss_value = 0, 0, time.monotonic(), float("nan")
    for step in range(recipe.steps):
        if cursor + recipe.batch_size > len(order):
            rng.shuffle(order)
            cursor = 0
        batch = [rows[i] for i in order[cursor : cursor + recipe.batch_size]]
        cursor += recipe.batch_size
        input_ids, position_ids, labels = pack_batch(batch, int(tokenizer.pad_token_id))
        # No attention mask: position ids that restart per example make the attention block-diagonal.
        loss = model(input_ids=input_ids, position_ids=position_ids, labels=labels, use_cache=False).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        tokens += sum(len(ids) for ids, _ in batch)
        loss_value = float(loss.detach())
        if progress is not None and (step % 10 == 0 or step == recipe.steps - 1):
            progress(step + 1, recipe.steps, loss_value)
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    seconds = time.monotonic() - started
    return {
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1),
        "final_loss": loss_value,
    }
