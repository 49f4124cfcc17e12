"""``make repro``: the papers' findings in miniature, on the synthetic tasks, through the public interfaces.

``python -m cotdistill.pipeline.repro [--smoke] [--seeds N] [--out docs/repro]`` trains a tiny
teacher (cached like the demo's), starts the four services on loopback, then for every arm below
runs ``cotdistill run configs/demo.yaml key=value ...`` (sampling, filtering, training on Ray
Train through the trainer service, evaluation and selection through the evaluator), and writes a
Markdown report with plots from the evaluation results:

(a) Fine-tune-CoT (``ft_cot``) vs answer-only fine-tuning (Ho et al.);
(b) diverse reasoning: D = 4 and 8 vs D = 1 (Ho et al.);
(c) student vs teacher, per task;
(d) steps to a target accuracy with distribution matching (SFT + top-k KL) vs sample matching
    (SFT only);
(e) the checkpoint chosen by in-distribution vs out-of-distribution selection, and what
    specialization costs out of distribution (Fu et al.);
(f) CoT + answer-only mixture vs CoT only, on both abilities (Flan / Fu et al.).

Each finding is computed from the numbers and reported as it came out, including when it does
not reproduce. ``--smoke`` runs every arm at a tiny scale (a check that the runner works, not a
result).

Modules: ``arms`` (tasks, scale, the students and the steps that run them), ``findings`` (reading
the evaluation results and the verdicts), ``report`` (Markdown and plots), ``runner`` (services,
the order of the steps, the command line).
"""

from cotdistill.pipeline.repro.arms import (
    FULL,
    MAIN_TASK,
    REPRO_TEACHER,
    SMOKE,
    TASKS,
    Arm,
    Context,
    Scale,
    arms,
    evaluate_teacher,
    sample,
    train_and_evaluate,
)
from cotdistill.pipeline.repro.findings import (
    ahead,
    compare,
    final,
    load_run,
    mean_sd,
    pct,
    steps_interpolated,
    steps_to,
)
from cotdistill.pipeline.repro.report import write_report
from cotdistill.pipeline.repro.runner import main, run_repro

_compare = compare  # the name the report's tests use

__all__ = [
    "FULL",
    "MAIN_TASK",
    "REPRO_TEACHER",
    "SMOKE",
    "TASKS",
    "Arm",
    "Context",
    "Scale",
    "ahead",
    "arms",
    "compare",
    "evaluate_teacher",
    "final",
    "load_run",
    "main",
    "mean_sd",
    "pct",
    "run_repro",
    "sample",
    "steps_interpolated",
    "steps_to",
    "train_and_evaluate",
    "write_report",
]
