"""Cross-tokenizer alignment: the compiled DP vs the straightforward pure-Python reference.

Texts: GSM8K-style rationales (the real GSM8K train answers from ../shared/data when present,
else synthetic arithmetic rationales), ~60-200 tokens each. Teacher tokenizer: byte-level BPE
(2,000), student tokenizer: Metaspace BPE (1,000), both trained on those texts, so the token
boundaries really differ. Measured: seconds per sequence pair for the DTW alignment path
(:func:`align` vs :func:`align_reference`; the results are checked identical first).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench.common import timeit, write_result
from cotdistill.common.alignment import align, align_reference, token_bytes

N_TEXTS = 40
GSM8K_TRAIN = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "openai_grade_school_math" / "train.jsonl"
)


def texts() -> tuple[list[str], str]:
    if GSM8K_TRAIN.is_file():
        with GSM8K_TRAIN.open(encoding="utf-8") as handle:
            rows = [json.loads(line) for _, line in zip(range(N_TEXTS * 10), handle, strict=False)]
        return [
            f"{r['question']} {r['answer'].split('####')[0].strip()}" for r in rows
        ], "GSM8K train (question + rationale)"
    from cotdistill.common.tasks import generate_synthetic

    examples = generate_synthetic("arithmetic", N_TEXTS * 10, seed=0, steps=(3, 5))
    return [f"{e.question} {e.rationale}" for e in examples], "synthetic arithmetic"


def main() -> None:
    from cotdistill.pipeline.tiny_models import train_tokenizer

    corpus, source = texts()
    teacher = train_tokenizer(corpus, "byte_bpe", 2000)
    student = train_tokenizer(corpus, "metaspace_bpe", 1000)
    pairs = []
    for text in corpus[:N_TEXTS]:
        t = token_bytes(teacher, teacher(text, add_special_tokens=False)["input_ids"])
        s = token_bytes(student, student(text, add_special_tokens=False)["input_ids"])
        pairs.append((t, s))
    for t, s in pairs:
        assert align(t, s) == align_reference(t, s), "compiled alignment differs from the reference"

    def compiled() -> None:
        for t, s in pairs:
            align(t, s)

    start = time.perf_counter()
    for t, s in pairs:
        align_reference(t, s)
    reference_s = (time.perf_counter() - start) / len(pairs)
    compiled_s = timeit(compiled, repeats=5, min_time_s=0.3) / len(pairs)
    lengths = [(len(t), len(s)) for t, s in pairs]
    write_result(
        "alignment",
        title="Cross-tokenizer DTW alignment (edit-distance cost), per sequence pair",
        metric="pairs/s",
        value=1 / compiled_s,
        baseline_name="pure-Python reference DP",
        baseline_value=1 / reference_s,
        goal=">= 100x",
        figures={
            "texts": source,
            "pairs": len(pairs),
            "mean_teacher_tokens": sum(a for a, _ in lengths) / len(lengths),
            "mean_student_tokens": sum(b for _, b in lengths) / len(lengths),
            "compiled_ms_per_pair": compiled_s * 1e3,
            "reference_ms_per_pair": reference_s * 1e3,
            "load_average_1m": os.getloadavg()[0],
        },
    )


if __name__ == "__main__":
    main()
