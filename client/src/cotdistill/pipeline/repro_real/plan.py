"""What ``make repro-real`` runs: the tasks, the two scales, the students, and each step's cost.

Every step is one or a few ``cotdistill run configs/repro-real.yaml key=value ...`` calls through
the services; its estimated cost (seconds, from throughput measured on this kind of machine) sizes
the CPU scale and drives the progress display's ETA.
"""

from __future__ import annotations

from dataclasses import dataclass

Split = tuple[str, str]  # (dataset, split)


@dataclass(frozen=True)
class TaskSets:
    """The data of one task: what the teacher samples, what tests and selects the students."""

    key: str
    train: Split
    test: Split
    ood: tuple[Split, ...] = ()  # out-of-distribution test sets, the first is the main one
    dev: Split | None = None  # in-distribution selection set (never a test question)
    ood_dev: Split | None = None  # out-of-distribution selection set (not one of the OOD test sets)
    rationale_tokens: int = 165  # the teacher's mean rationale length on it (sizing only)
    max_tokens: int = 320  # the teacher's sampling limit (truncated samples are dropped)
    # Sample training rationales two-stage (rationale, then the answer trigger) as Fine-tune-CoT
    # did: needed where a rationale ends in a conclusion that is not the answer's form ("the coin
    # is still heads up" for a yes/no question). The arithmetic rationales end in their number,
    # so they are sampled in one stage (cheaper; the filter reads the last number).
    two_stage_samples: bool = False


def _symbolic(key: str, rationale_tokens: int) -> TaskSets:
    """Kojima et al.'s symbolic tasks: their own train/test splits, two-stage samples."""
    return TaskSets(
        key, train=(key, "train"), test=(key, "test"), rationale_tokens=rationale_tokens, two_stage_samples=True
    )


TASKS: dict[str, TaskSets] = {
    # MultiArith: a pretrained 135M student learns it in tens of steps (docs/demo-real: 1.7% -> 20%).
    # Its dev split is the last 60 train questions (our split: no paper defines one); sampling reads
    # train_nodev. OOD: the other one- and two-step word-problem sets of Fu et al.'s table.
    "multiarith": TaskSets(
        "multiarith",
        train=("multiarith", "train_nodev"),
        test=("multiarith", "test"),
        ood=(("addsub", "test"), ("svamp", "test"), ("asdiv", "test")),
        dev=("multiarith", "dev"),
        ood_dev=("singleeq", "train"),
    ),
    "gsm8k": TaskSets(  # (a) only, in distribution: no OOD set or selection to pay for
        "gsm8k",
        train=("gsm8k", "train_nodev"),
        test=("gsm8k", "test"),
        rationale_tokens=230,
        max_tokens=400,
    ),
    "coin_flip": _symbolic("coin_flip", rationale_tokens=90),
    "last_letters": _symbolic("last_letters", rationale_tokens=110),
}
MAIN_TASK = "multiarith"
GENERIC: Split = ("commonsenseqa", "test")
"""Generic ability before and after specialization: CommonsenseQA, asked answer-only with Kojima et
al.'s raw prompt (``kojima_answer_only``: no chat template, so the untrained and the fine-tuned
students get the same text; answers are one letter, so it is cheap on CPU; chance is 20%)."""
GENERIC_FORMAT = "kojima_answer_only"
BASELINE_FORMAT = "chat_zero_shot_cot"
"""The untrained instruct student asked fairly: the teacher's Zero-shot-CoT through its own chat template."""
TEACHER = "qwen2.5-coder-0.5b-instruct"
STUDENTS = {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma-3-270m"}


@dataclass(frozen=True)
class Scale:
    """How big everything is. ``students``: keys of STUDENTS (the first runs every arm)."""

    name: str
    students: tuple[str, ...]
    questions: int  # MultiArith questions the teacher samples (and GSM8K's, at gsm8k_questions)
    gsm8k_questions: int
    side_questions: int  # coin flip / last letters
    diverse: tuple[int, ...]  # D of finding (b); 4 is every other arm's D
    steps: int
    batch_size: int
    curve_every: int  # checkpoint grid of the (d)/(e) arms
    eval_limit: int  # ID and main-OOD test questions per accuracy
    select_limit: int
    generic_limit: int
    seeds: int
    target_accuracy: float
    eval_max_tokens: int = 256
    all_ood: bool = False  # every OOD set of a task, not only its main one
    overrides: tuple[str, ...] = ()  # recipe keys of this scale (GPU training, larger batches)


CPU = Scale(
    name="cpu",
    students=("smollm2",),
    questions=100,
    gsm8k_questions=48,
    side_questions=40,
    diverse=(1, 4),
    steps=40,
    batch_size=8,
    curve_every=10,
    eval_limit=40,
    select_limit=20,
    generic_limit=60,
    seeds=1,
    target_accuracy=0.1,
)
"""Sized from the throughput on 2 cores (see COSTS_CPU) to run in <= 2.5 h: `--plan` prints it."""

GPU = Scale(
    name="gpu",
    students=("smollm2", "gemma3"),
    questions=360,
    gsm8k_questions=600,
    side_questions=200,
    diverse=(1, 4, 8),
    steps=150,
    batch_size=32,
    curve_every=50,
    eval_limit=120,
    select_limit=60,
    generic_limit=300,
    seeds=2,
    target_accuracy=0.3,
    all_ood=True,
    overrides=(
        "training.scaling.use_gpu=true",
        "training.scaling.cpus_per_worker=4",
        "evaluation.batch_size=128",
        "sampling.concurrency=4",
    ),
)

SMOKE = Scale(
    name="smoke",
    students=("smollm2",),
    questions=6,
    gsm8k_questions=4,
    side_questions=4,
    diverse=(1, 4),
    steps=2,
    batch_size=2,
    curve_every=1,
    eval_limit=3,
    select_limit=2,
    generic_limit=3,
    seeds=1,
    target_accuracy=0.1,
    eval_max_tokens=48,
)
"""Every step on a handful of questions (a check that the runner works, not a result)."""

SCALES = {s.name: s for s in (CPU, GPU, SMOKE)}


@dataclass(frozen=True)
class Arm:
    """One trained student: which samples, format and objective, and what it is evaluated on."""

    name: str
    task: str
    samples: int  # D of the sampling run it trains on
    format: str = "ft_cot"
    objective: str = "sft"  # "sft" or "sft+kd" (cross-tokenizer top-k distribution matching)
    answer_only_fraction: float = 0.0
    eval_formats: tuple[str, ...] = ("ft_cot",)
    curve: bool = False  # checkpoints every Scale.curve_every, selection by ID and by OOD
    generic: bool = False  # also CommonsenseQA answer-only at the last checkpoint (specialization cost)
    one_seed: bool = False
    first_student_only: bool = True

    def run_name(self, student: str, seed: int) -> str:
        return f"{student}-{self.task}-{self.name}-s{seed}"


def arms(scale: Scale) -> list[Arm]:
    """Every student trained (the finding each serves in the comment)."""
    fu_both = ("fu_zs_cot", "fu_zs_answer")
    out = [
        Arm("cot_d4", MAIN_TASK, 4, curve=True, generic=True, first_student_only=False),  # (a)-(e), floor of (f)
        Arm("answer_d4", MAIN_TASK, 4, format="answer_only", eval_formats=("answer_only",)),  # (a)
        Arm("kd_d4", MAIN_TASK, 4, objective="sft+kd", curve=True, generic=True, first_student_only=False),  # (d) (e)
        # (f) Fu et al.'s zero-shot formats: the CoT prompt ("Let's think step by step") and the
        # answer-only prompt ("A:") differ, so one student can be asked for either.
        Arm("fu_cot_d4", MAIN_TASK, 4, format="fu_zs_cot", eval_formats=fu_both, one_seed=True),
        Arm("fu_answer_d4", MAIN_TASK, 4, format="fu_zs_answer", eval_formats=fu_both, one_seed=True),
        Arm(
            "fu_mix_d4",
            MAIN_TASK,
            4,
            format="fu_zs_cot",
            answer_only_fraction=0.5,
            eval_formats=fu_both,
            one_seed=True,
        ),
        Arm("cot_d1", "gsm8k", 1, one_seed=True),  # (a) on GSM8K
        Arm("answer_d1", "gsm8k", 1, format="answer_only", eval_formats=("answer_only",), one_seed=True),  # (a)
        Arm("cot_d4", "coin_flip", 4, one_seed=True),  # (c)
        Arm("cot_d4", "last_letters", 4, one_seed=True),  # (c)
    ]
    out += [Arm(f"cot_d{d}", MAIN_TASK, d) for d in scale.diverse if d != 4]  # (b)
    return out


def sampling_runs(scale: Scale) -> list[tuple[str, int]]:
    """(task, D) of every sampling run the arms need, in the order they run."""
    return sorted({(a.task, a.samples) for a in arms(scale)}, key=lambda td: (td[0] != MAIN_TASK, td))


def questions(scale: Scale, task: str) -> int:
    if task == MAIN_TASK:
        return scale.questions
    return scale.gsm8k_questions if task == "gsm8k" else scale.side_questions


def seeds_of(scale: Scale, arm: Arm) -> range:
    return range(1 if arm.one_seed else scale.seeds)


def students_of(scale: Scale, arm: Arm) -> tuple[str, ...]:
    return scale.students[:1] if arm.first_student_only else scale.students


def ood_sets(scale: Scale, task: TaskSets) -> tuple[Split, ...]:
    return task.ood if scale.all_ood else task.ood[:1]


# --------------------------------------------------------------------------------------------
# Costs: measured on this machine (2 cores, docs/demo-real and BENCHMARKS.md), used to size the
# CPU scale and to show an ETA. The progress display recalibrates them as steps finish.


@dataclass(frozen=True)
class Costs:
    teacher_tokens_per_s: float = 140.0  # Qwen2.5-0.5B sampling on vLLM CPU, batched
    teacher_eval_s_per_question: float = 2.0  # its evaluation (chat CoT, greedy): 120 questions in 247 s
    train_s_per_step_at_8: float = 4.0  # SmolLM2-135M, batch 8, bf16, one worker
    eval_s_per_question: float = 1.8  # a trained student's CoT, greedy, batched 30 (docs/demo-real: 1.4-1.9)
    eval_s_per_question_untrained: float = 2.6  # rambles to max_tokens in any format (720 s for 6 x 40 here)
    eval_s_per_question_short: float = 0.3  # answer-only prompts
    per_call_s: float = 20.0  # a `cotdistill run` call: start-up, connection, writing results
    per_training_s: float = 30.0  # a trainer run: worker start, model load


COSTS_CPU = Costs()
COSTS_GPU = Costs(
    teacher_tokens_per_s=20_000.0,
    teacher_eval_s_per_question=0.01,
    train_s_per_step_at_8=0.05,
    eval_s_per_question=0.03,
    eval_s_per_question_untrained=0.03,
    eval_s_per_question_short=0.005,
    per_call_s=6.0,
    per_training_s=20.0,
)
"""Assumed for one H100 (not yet measured: no device was lent when this was written); the
progress display's ETA recalibrates them from the first steps."""
COSTS = {"cpu": COSTS_CPU, "smoke": COSTS_CPU, "gpu": COSTS_GPU}


def eval_cost(costs: Costs, fmt: str, questions: int, untrained: bool = False) -> float:
    if untrained and fmt != GENERIC_FORMAT:
        per = costs.eval_s_per_question_untrained  # it does not stop after a short answer either
    elif "answer" in fmt:
        per = costs.eval_s_per_question_short
    else:
        per = costs.eval_s_per_question
    return per * questions
