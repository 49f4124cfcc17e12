"""A tiny copy task and a synthetic teacher for the trainer's tests and benchmarks.

Task: "Last letter of xqz? ###" -> " The word xqz ends with z. --> z END". Chance accuracy is
1/26. The "teacher" is an oracle that writes correct rationales with the teacher tokenizer and
puts ``peak`` probability on each generated token, the rest on k-1 other candidates: exactly the
shape (token ids + top-k ids/logprobs per token) the sampling job writes.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import numpy as np

from cotdistill.common.samples import SampleRecord, write_shard

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def question(word: str) -> str:
    return f"Last letter of {word}?"


def rationale(word: str) -> str:
    return f"The word {word} ends with {word[-1]}."


def words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(LETTERS) for _ in range(3)) for _ in range(n)]


def corpus(n: int = 500, seed: int = 99) -> list[str]:
    """Texts to train the test tokenizers on."""
    return [f"{question(w)} ### {rationale(w)} --> {w[-1]} END" for w in words(n, seed)]


def teacher_records(
    ws: list[str], teacher_tok: Any | None = None, k: int = 4, peak: float = 0.8, seed: int = 0
) -> list[SampleRecord]:
    """One correct sample per word; with ``teacher_tok``, generated tokens and a top-k per token."""
    rng = np.random.default_rng(seed)
    out = []
    for i, w in enumerate(ws):
        rec = SampleRecord(
            example_id=f"w{i}",
            sample_index=0,
            prompt=f"Q: {question(w)}\nA: Let's think step by step.",
            rationale=rationale(w),
            prediction=w[-1],
            gold=w[-1],
            correct=True,
        )
        if teacher_tok is not None:
            text = f" {rationale(w)} --> {w[-1]} END"
            ids = teacher_tok(text, add_special_tokens=False)["input_ids"] + [teacher_tok.eos_token_id]
            vocab = len(teacher_tok)
            top_ids, top_lps = [], []
            rest = math.log((1 - peak) / (k - 1))
            for t in ids:
                others = [int(x) for x in rng.choice(vocab, size=k + 2, replace=False) if x != t][: k - 1]
                top_ids += [t, *others]
                top_lps += [math.log(peak)] + [rest] * (k - 1)
            rec.token_ids, rec.token_logprobs = ids, [math.log(peak)] * len(ids)
            rec.top_k, rec.top_ids, rec.top_logprobs = k, top_ids, top_lps
        out.append(rec)
    return out


def write_samples(path: Path, ws: list[str], teacher_tok: Any | None = None, **kwargs: Any) -> Path:
    return write_shard(path, teacher_records(ws, teacher_tok, **kwargs), {"teacher": "synthetic-oracle"})


def accuracy(model_dir: str | Path, ws: list[str], fmt_prompt: str = "{q} ###") -> float:
    """Greedy exact-match accuracy of the answer after "-->" on ``ws``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok.padding_side = "left"
    prompts = [fmt_prompt.format(q=question(w)) for w in ws]
    enc = tok(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    hits = 0
    for w, text in zip(ws, texts, strict=True):
        answer = text.split("-->", 1)[1].split("END", 1)[0].strip() if "-->" in text else ""
        hits += answer == w[-1]
    return hits / len(ws)
