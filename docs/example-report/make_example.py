"""Regenerate this example report from a real (miniature) run, on CPU, in a few minutes.

    .venv/bin/python docs/example-report/make_example.py [WORK_DIR]

What it does, all real components:
1. trains tiny Llama-style students from scratch (plain torch loop) on Fine-tune-CoT ``ft_cot``
   pairs of ``synthetic_last_letters`` (2 words, gold rationales), saving ``checkpoints/step-N``;
   a second size (hidden 32) for the scaling curve; a larger model (hidden 128) stands in for the
   teacher; two more hidden-64 students on 50 questions with D = 1 or 4 rationale styles per
   question (diverse reasoning in miniature) for the accuracy-vs-D curve; the five runs train in
   parallel processes;
2. starts the evaluator gRPC service in-process and evaluates every checkpoint on the ID set
   (``synthetic_last_letters``), the OOD set (``synthetic_last_letters_4``: 4 words) and a
   BIG-Bench-Hard-style generic set (coin-flip questions as ``{"examples": [{input, target}]}``);
3. runs ``Select`` (OOD accuracy on the dev splits) and renders the report with
   :func:`cotdistill.pipeline.reports.render_run_report` into this folder.

The "teacher" here is not a sampled teacher: it is a larger model trained on the same gold
rationales, so that the teacher-vs-student plot has something to show on a CPU.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from cotdistill.common.tasks import load_dataset, render_student_pair
from cotdistill.pipeline.tiny_models import build_causal_lm, train_tokenizer

HERE = Path(__file__).resolve().parent
ID, OOD = "synthetic_last_letters", "synthetic_last_letters_4"
STUDENT_STEPS = (30, 60, 120, 240)
D_STEPS = 120
BATCH = 16
EVAL_N = 60


def corpus() -> list[str]:
    texts = []
    for name in (ID, OOD, "synthetic_coin_flip"):
        for ex in load_dataset(name, "train", limit=500):
            prompt, completion = render_student_pair("ft_cot", ex)
            texts.append(prompt + completion)
    return texts


def diverse_pairs(questions: int, d: int) -> list[tuple[str, str]]:
    """Diverse reasoning in miniature: ``questions`` questions, each with ``d`` rationale styles."""
    from cotdistill.common.tasks import generate_synthetic, rationale_styles

    pairs = []
    for style in rationale_styles(ID)[:d]:
        examples = generate_synthetic(ID, questions, seed=11, style=style)
        pairs += [render_student_pair("ft_cot", ex) for ex in examples]
    return pairs


def train(
    out: Path,
    tokenizer: object,
    *,
    hidden: int,
    layers: int,
    steps: tuple[int, ...],
    seed: int,
    pairs: list[tuple[str, str]] | None = None,
) -> list[Path]:
    """Fine-tune a fresh model on ft_cot pairs; save ``out/step-N`` at each of ``steps``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = build_causal_lm(out / "init", tokenizer, hidden_size=hidden, num_layers=layers, num_heads=2, seed=seed)  # type: ignore[arg-type]
    model = AutoModelForCausalLM.from_pretrained(base)
    tok = tokenizer
    pairs = pairs or [render_student_pair("ft_cot", ex) for ex in load_dataset(ID, "train")]
    encoded = []
    for prompt, completion in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
        c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]  # type: ignore[operator,attr-defined]
        encoded.append((p, c))
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    saved = []
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0 = time.perf_counter()
    for step in range(1, max(steps) + 1):
        idx = torch.randint(len(encoded), (BATCH,), generator=gen).tolist()
        length = max(len(encoded[i][0]) + len(encoded[i][1]) for i in idx)
        ids = torch.full((BATCH, length), tok.pad_token_id)  # type: ignore[attr-defined]
        labels = torch.full((BATCH, length), -100)
        mask = torch.zeros((BATCH, length), dtype=torch.long)
        for row, i in enumerate(idx):
            p, c = encoded[i]
            seq = p + c
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, len(p) : len(seq)] = torch.tensor(c)  # loss on the completion only
            mask[row, : len(seq)] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
        if step % 30 == 0:
            print(
                f"  {out.name} step {step}: loss {float(loss.detach()):.3f} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        if step in steps:
            target = out / f"step-{step}"
            model.save_pretrained(target)
            tok.save_pretrained(target)  # type: ignore[attr-defined]
            (target / "run_state.json").write_text(json.dumps({"step": step, "train_loss": float(loss)}))
            saved.append(target)
            print(f"  {out.name} step {step}: loss {float(loss):.3f}", flush=True)
    shutil.rmtree(out / "init")
    return saved


def generic_set(path: Path) -> Path:
    """Coin-flip questions as a BIG-Bench-Hard-style file (the generic-ability set)."""
    examples = [
        {"input": e.question, "target": e.answer.capitalize()}
        for e in load_dataset("synthetic_coin_flip", "test", limit=60)
    ]
    path.write_text(json.dumps({"examples": examples}, indent=1))
    return path


async def evaluate_all(run: Path, models: list[tuple[Path, str, int, dict[str, str]]], generic: Path) -> None:
    from rich.console import Console

    from cotdistill.evaluator.server import build_server
    from cotdistill.evaluator.settings import EvaluatorSettings
    from cotdistill.pipeline.eval_cli import _evaluate_all, _select, print_results
    from cotdistill.v1 import common_pb2, evaluator_pb2

    service = await build_server(EvaluatorSettings(port=0, metrics_port=0, artifacts_dir=str(run / "artifacts")))
    address = f"127.0.0.1:{service.port}"
    datasets = [
        evaluator_pb2.EvalDataset(name=ID, limit=EVAL_N, group=evaluator_pb2.DATASET_GROUP_IN_DISTRIBUTION),
        evaluator_pb2.EvalDataset(name=OOD, limit=EVAL_N, group=evaluator_pb2.DATASET_GROUP_OUT_OF_DISTRIBUTION),
        evaluator_pb2.EvalDataset(name=str(generic), group=evaluator_pb2.DATASET_GROUP_GENERIC),
    ]
    generation = evaluator_pb2.EvalGeneration(max_tokens=48, batch_size=64)
    requests = [
        evaluator_pb2.EvaluateRequest(
            model=common_pb2.ModelRef(checkpoint_path=str(path)),
            datasets=datasets,
            formats=["ft_cot"],
            generation=generation,
            output_dir=str(run),
            label=label,
            step=step,
            tags=tags,
        )
        for path, label, step, tags in models
    ]
    console = Console(stderr=True)
    print_results(await _evaluate_all(address, requests, 3600, console), console)
    students = [m for m in models if m[3].get("run") == "h64"]
    select = evaluator_pb2.SelectRequest(
        candidates=[
            evaluator_pb2.Candidate(model=common_pb2.ModelRef(checkpoint_path=str(p)), label=label, step=step)
            for p, label, step, _ in students
        ],
        datasets=[
            evaluator_pb2.EvalDataset(
                name=ID, split="dev", limit=EVAL_N, group=evaluator_pb2.DATASET_GROUP_IN_DISTRIBUTION
            ),
            evaluator_pb2.EvalDataset(
                name=OOD, split="dev", limit=EVAL_N, group=evaluator_pb2.DATASET_GROUP_OUT_OF_DISTRIBUTION
            ),
        ],
        format="ft_cot",
        signal=evaluator_pb2.SELECTION_SIGNAL_WEIGHTED,
        id_weight=0.5,
        generation=generation,
        output_dir=str(run),
    )
    reply = await _select(address, select, 3600)
    console.print(f"selected {reply.chosen.label}")
    await service.stop(0)


def _train_job(job: tuple[str, int, tuple[int, ...], int, int]) -> list[Path]:
    """One training run in its own process (the runs are independent; this is the slow part)."""
    out, hidden, steps, seed, d = job
    torch.set_num_threads(1)
    tokenizer = train_tokenizer(corpus(), "metaspace_bpe", 200)  # deterministic: same in every job
    pairs = diverse_pairs(50, d) if d else None
    return train(Path(out), tokenizer, hidden=hidden, layers=2, steps=steps, seed=seed, pairs=pairs)


def main() -> None:
    import multiprocessing

    started = time.perf_counter()
    work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="example-report-"))
    run = work / "run"
    ckpt = run / "checkpoints"
    last = STUDENT_STEPS[-1]
    jobs = [
        (str(ckpt / "h64"), 64, STUDENT_STEPS, 1, 0),  # the step curve
        (str(ckpt / "h32"), 32, (last,), 2, 0),  # a second student size, for the scaling curve
        (str(run / "teacher-h128"), 128, (last,), 3, 0),  # the stand-in teacher: a larger model
        (str(ckpt / "d1"), 64, (D_STEPS,), 4, 1),  # D = 1 rationale per question
        (str(ckpt / "d4"), 64, (D_STEPS,), 4, 4),  # D = 4 rationales per question
    ]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        h64, (h32,), (teacher,), (d1,), (d4,) = pool.map(_train_job, jobs)
    print(f"trained in {time.perf_counter() - started:.0f} s", flush=True)
    models: list[tuple[Path, str, int, dict[str, str]]] = [
        (p, f"student h64 {p.name}", s, {"role": "student", "run": "h64"})
        for p, s in zip(h64, STUDENT_STEPS, strict=True)
    ]
    models.append((h32, f"student h32 {h32.name}", last, {"role": "student", "run": "h32"}))
    models.append((teacher, "teacher stand-in (h128)", 0, {"role": "teacher"}))
    for d, path in ((1, d1), (4, d4)):
        models.append((path, f"student D={d}", D_STEPS, {"role": "student", "run": f"D{d}", "num_samples": str(d)}))
    asyncio.run(evaluate_all(run, models, generic_set(work / "coin_flip_bbh_style.json")))

    from cotdistill.pipeline.reports import render_run_report

    report = render_run_report(run, HERE)
    # Paths inside the committed files point into the temporary work dir; keep them relative.
    for file in (report.markdown, report.json):
        file.write_text(file.read_text().replace(str(run) + "/", "").replace(str(work) + "/", ""))
    print(f"report: {report.markdown} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
