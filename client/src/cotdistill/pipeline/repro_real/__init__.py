"""``make repro-real``: the papers' findings on real pretrained models and real datasets.

``python -m cotdistill.pipeline.repro_real [--scale cpu|gpu|smoke] [--resume] [--plan]`` pulls the
teacher (Qwen2.5-Coder-0.5B-Instruct, vLLM backend) and the students (SmolLM2-135M-Instruct; and
Gemma-3-270m at the GPU scale: another tokenizer family) from the models registry, starts the
teacher, trainer and evaluator services on loopback, and runs every step through
``cotdistill run configs/repro-real.yaml key=value ...``:

1. the teacher's and the untrained students' accuracies (the floor of every table) and the
   students' CommonsenseQA answer-only accuracy (generic ability before specializing);
2. the teacher samples each training set once (MultiArith D = 1 and 4, GSM8K, coin flip, last
   letters) through its chat template; the filter keeps correct, complete rationales;
3. the arms: (a) Fine-tune-CoT vs answer-only on MultiArith and GSM8K; (b) D = 1 vs 4 (and 8);
   (c) student vs teacher per task; (d) SFT vs SFT + cross-tokenizer top-k KD, checkpoints on a
   grid, steps to a target accuracy; (e) selection by MultiArith dev (ID) vs SingleEq (OOD) and
   generic ability after; (f) Fu et al.'s CoT-only / answer-only-only / 50% mixture, each asked
   with both prompts.

The report (``docs/repro-real/<scale>/report.md``, plots, ``results.json``) states each finding as
it came out. ``--resume`` skips finished steps (each writes ``done.json``; sampling jobs resume
unit by unit), so a run may span several sessions; ``--plan`` prints the steps with their
estimated minutes (the CPU scale is sized to <= 2.5 h on 2 cores). The progress display shows the
steps done and an ETA recalibrated by the steps' real durations.

Modules: ``plan`` (tasks, scales, arms, costs), ``steps`` (each resumable step), ``runner``
(services, progress, command line), ``report`` (findings, Markdown, plots).
"""
