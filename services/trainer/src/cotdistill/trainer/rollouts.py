"""On-policy micro-batches: the current student samples, the teacher scores, targets are aligned.

One :meth:`Rollouts.batch` call, on an on-policy step (GKD's lambda, :mod:`.on_policy`):

1. draw ``batch_size`` questions of the training set (seeded by run seed, step, micro-batch and
   rank: ranks sample different questions, a resumed run the same ones);
2. generate a completion for each with the current student (one batched ``generate``, left
   padded, sampling at ``temperature``, stopping at the format's stop string or EOS);
3. send the rationale part of each completion to the teacher's ``Score``, after the teacher's own
   prompt for the question (the ``prompt`` column of the shards, rendered as the teacher saw it);
4. align the teacher's tokens and top-k to the student's tokens (``cotdistill.common.alignment``),
   or, with ``support=student_topk`` and a teacher sharing the student's vocabulary, ask for the
   teacher's logprobs of the student's own top-k at each position (Score candidate ids);
5. collate like any training batch: labels on the generated tokens, KD targets where the teacher
   scored the token, no candidate (no loss) where it did not (the format's ``--> answer END``
   tail, tokens the two tokenizers cut differently).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from cotdistill.common.alignment import ABSENT, Aligner, TeacherTokens
from cotdistill.common.errors import InvalidArgument
from cotdistill.common.lm import eos_ids, pad_id, tokenizer_content_hash
from cotdistill.common.lm.decode import generate as decode_batch
from cotdistill.common.lm.loading import describe, load_tokenizer
from cotdistill.common.retry import RetryPolicy
from cotdistill.common.samples import MAX_TOP_K, ShardMetadata, TeacherFacts
from cotdistill.trainer.data import IGNORE, Example, Sample, build_batches, render_pair
from cotdistill.trainer.teacher_client import ScoreQuery, TeacherScorer

if TYPE_CHECKING:
    from cotdistill.trainer.config import RecipeConfig

Support = Literal["teacher_topk", "student_topk"]


@dataclass(frozen=True)
class PolicyPrompt:
    """One question as both sides see it: the student's prompt tokens and the teacher's prompt.

    The teacher's prompt is text (``teacher_rendered``: already through its chat template) or,
    when ``teacher_chat`` is set, a conversation its replica renders.
    """

    student_ids: np.ndarray  # (P,) int64, with the tokenizer's special tokens
    teacher_prompt: str
    teacher_rendered: bool = False
    teacher_chat: tuple[tuple[str, str], ...] = ()
    teacher_prefix: str = ""

    def query(self, **completion: Any) -> ScoreQuery:
        """A Score query of a completion (``completion=`` text or ``completion_ids=``) after this prompt."""
        return ScoreQuery(
            prompt=self.teacher_prompt,
            prompt_rendered=self.teacher_rendered,
            chat=self.teacher_chat,
            assistant_prefix=self.teacher_prefix,
            **completion,
        )


def policy_prompts(
    samples: Sequence[Sample],
    tokenizer: Any,
    fmt: str,
    *,
    reuse_teacher_prompts: bool,
    teacher_rendered: bool = False,
    teacher_chat: bool = False,
) -> list[PolicyPrompt]:
    """One prompt per distinct question of ``samples`` (D samples of a question are one prompt).

    With ``reuse_teacher_prompts`` (the shards were made by this teacher) the teacher sees the
    prompt each sample was taken or scored with, exactly. Otherwise (another teacher, JSONL data)
    it gets Zero-shot-CoT: as a conversation with ``teacher_chat`` (its replica renders it), else
    as the text ``Q: {q}\\nA: Let's think step by step.``.
    """
    from cotdistill.common import tasks

    seen: set[str] = set()
    out = []
    for sample in samples:
        if sample.completion is not None or sample.question in seen:
            continue
        seen.add(sample.question)
        student_prompt, _, _ = render_pair(sample, fmt, False)
        ids = np.asarray(tokenizer(student_prompt, add_special_tokens=True)["input_ids"], dtype=np.int64)
        if reuse_teacher_prompts and sample.teacher_prompt:
            out.append(PolicyPrompt(ids, sample.teacher_prompt, teacher_rendered))
            continue
        example = tasks.Example(id="", question=sample.question, answer="", answer_type="text")
        raw = tasks.render_teacher_prompt("zero_shot_cot", example)
        if teacher_chat:
            chat = tasks.teacher_chat_prompt("zero_shot_cot", example)
            out.append(PolicyPrompt(ids, raw, teacher_chat=tuple(chat.messages), teacher_prefix=chat.prefix))
        else:
            out.append(PolicyPrompt(ids, raw))
    return out


def rollout_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """A seed per (run seed, optimizer step, micro-batch, rank)."""
    return int.from_bytes(hashlib.sha256(f"rollout:{seed}:{step}:{micro}:{rank}".encode()).digest()[:7], "big")


def join_rationale(prompt: PolicyPrompt, rationale: str) -> str:
    """The rationale as the teacher would have continued its prompt: a space after a word, none
    after whitespace or at the start of a fresh assistant turn."""
    rationale = rationale.strip()
    before = prompt.teacher_prefix if prompt.teacher_chat else prompt.teacher_prompt
    if not before or before[-1].isspace():
        return rationale
    return " " + rationale


class Rollouts:
    """Builds on-policy micro-batches; see the module docstring.

    Args:
        prompts: the questions to sample from.
        tokenizer: the student's tokenizer.
        scorer: the teacher's Score client.
        aligner: teacher -> student alignment (any tokenizer pair).
        fmt: the student format (its stop strings end generation; its parser finds the rationale).
        support: teacher_topk, or student_topk (needs a teacher with the student's vocabulary).
    """

    def __init__(
        self,
        prompts: Sequence[PolicyPrompt],
        tokenizer: Any,
        scorer: TeacherScorer,
        aligner: Aligner,
        *,
        fmt: str,
        batch_size: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        top_k: int,
        support: Support = "teacher_topk",
        seed: int = 0,
        rank: int = 0,
        packing: bool = True,
    ) -> None:
        from cotdistill.common import tasks

        if not prompts:
            raise ValueError("on-policy training needs at least one question")
        self.prompts = list(prompts)
        self.tok = tokenizer
        self.scorer = scorer
        self.aligner = aligner
        self.fmt = fmt
        self.stop = tasks.student_stop(fmt)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.support: Support = support
        self.seed = seed
        self.rank = rank
        self.packing = packing
        # The student's EOS set (generation config, tokenizer, chat template end of turn): any of
        # them ends a rollout, as it ends the model server's completions.
        self.eos = eos_ids(tokenizer)  # with the model's own EOS ids once generate() sees the model
        self.pad_id = pad_id(tokenizer, self.eos)  # for the training batches

    # ---- generation --------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, model: Any, picks: list[PolicyPrompt], seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Sampled completion ids per prompt (EOS kept), and with student_topk support the
        student's own top-k ids at each of their positions ((C, k) each; else empty).

        Decoded as the model server would serve the student (``cotdistill.common.lm.decode``:
        its EOS set, sampling step and stop strings), so on-policy samples are what users get.
        """
        device = next(model.parameters()).device
        lm = describe(model, self.tok, "student")
        self.eos = lm.eos_ids
        was_training = model.training
        model.eval()
        want_support = self.support == "student_topk"
        try:
            # Generation draws from the global RNG: fork it, so training's own randomness and a
            # resumed run's stream do not depend on how many tokens were sampled.
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                decoded = decode_batch(
                    lm,
                    [p.student_ids.tolist() for p in picks],
                    max_tokens=self.max_new_tokens,
                    temperature=self.temperature,
                    top_p=self.top_p,
                    stop=self.stop,
                    support_k=self.top_k if want_support else 0,
                )
        finally:
            model.train(was_training)
        completions = [np.asarray(d.token_ids, dtype=np.int64) for d in decoded]
        supports = [
            d.support.cpu().numpy().astype(np.int64) if want_support else np.zeros((0, self.top_k), dtype=np.int64)
            for d in decoded
        ]
        return completions, supports

    # ---- one micro-batch -----------------------------------------------------------------------

    def batch(self, model: Any, step: int, micro: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """An on-policy micro-batch for optimizer step ``step`` and its figures.

        Figures: ``on_policy_tokens`` (generated), ``on_policy_scored_fraction`` (of generated
        tokens with a teacher target), ``on_policy_teacher_nll`` (the teacher's mean negative
        logprob of the student's rationale tokens: how plausible the teacher finds them),
        ``on_policy_generate_s`` and ``on_policy_score_s``.
        """
        seed = rollout_seed(self.seed, step, micro, self.rank)
        rng = random.Random(seed)
        picks = [self.prompts[rng.randrange(len(self.prompts))] for _ in range(self.batch_size)]
        started = time.perf_counter()
        completions, supports = self.generate(model, picks, seed)
        generated_s = time.perf_counter() - started
        texts = [self.tok.decode(c, skip_special_tokens=True) for c in completions]
        queries, scored_rows = self._queries(picks, completions, supports, texts)
        started = time.perf_counter()
        results = self.scorer.score(queries)
        score_s = time.perf_counter() - started
        by_row = dict(zip(scored_rows, results, strict=True))
        examples, matched, teacher_lp, teacher_tokens = [], 0, 0.0, 0
        for row, (pick, completion) in enumerate(zip(picks, completions, strict=True)):
            ids = np.full((len(completion), self.top_k), 0, dtype=np.int64)
            lps = np.full((len(completion), self.top_k), ABSENT, dtype=np.float32)
            result = by_row.get(row)
            if result is not None:
                teacher_lp += float(result.token_logprobs.sum())
                teacher_tokens += len(result.token_logprobs)
                if self.support == "student_topk" and result.candidate_logprobs is not None:
                    # The teacher scored the student's own tokens: row t of its candidates is
                    # the prediction of completion token t, over the student's top-k there.
                    # The ending EOS was not scored (only the body is): it keeps no target.
                    n = len(completion) - 1 if completion[-1] in self.eos else len(completion)
                    ids = supports[row]
                    lps[:n] = result.candidate_logprobs[:n]
                    matched += n
                else:
                    teacher = TeacherTokens(result.token_ids, result.top_ids, result.top_logprobs)
                    ids, lps, n_matched = self.aligner.targets(completion, teacher, one_hot_unmatched=False)
                    matched += n_matched
            examples.append(_example(pick.student_ids, completion, ids, lps))
        batch = build_batches(
            examples,
            batch_size=len(examples),
            packing=self.packing,
            pad_id=self.pad_id,
            seed=seed % 2**31,
            top_k=self.top_k,
        )[0]
        generated = sum(len(c) for c in completions)
        figures = {
            "on_policy_tokens": float(generated),
            "on_policy_scored_fraction": matched / generated if generated else 0.0,
            "on_policy_teacher_nll": -teacher_lp / teacher_tokens if teacher_tokens else 0.0,
            "on_policy_generate_s": generated_s,
            "on_policy_score_s": score_s,
        }
        return batch, figures

    def _queries(
        self,
        picks: list[PolicyPrompt],
        completions: list[np.ndarray],
        supports: list[np.ndarray],
        texts: list[str],
    ) -> tuple[list[ScoreQuery], list[int]]:
        """Score queries for the completions that have a rationale, and which rows they are."""
        from cotdistill.common import tasks

        queries, rows = [], []
        for row, (pick, completion, text) in enumerate(zip(picks, completions, texts, strict=True)):
            if self.support == "student_topk":
                # Same vocabulary: the teacher scores the student's exact tokens (EOS excluded).
                body = completion[:-1] if len(completion) and completion[-1] in self.eos else completion
                if not len(body):
                    continue
                cands = supports[row][: len(body)]
                queries.append(
                    pick.query(
                        completion_ids=body.tolist(),
                        candidate_ids=cands.reshape(-1).tolist(),
                        candidates_per_token=self.top_k,
                    )
                )
                rows.append(row)
                continue
            rationale, _ = tasks.parse_student_completion(self.fmt, text)
            if not rationale.strip():
                continue
            queries.append(pick.query(completion=join_rationale(pick, rationale)))
            rows.append(row)
        return queries, rows


def _example(prompt: np.ndarray, completion: np.ndarray, kd_ids: np.ndarray, kd_lps: np.ndarray) -> Example:
    """A decoder-only training example: labels and targets on the completion (pre-shifted)."""
    ids = np.concatenate([prompt, completion]).astype(np.int64)
    labels = np.full(len(ids), IGNORE, dtype=np.int64)
    start = len(prompt) - 1
    labels[start : start + len(completion)] = completion
    k = kd_ids.shape[1]
    full_ids = np.zeros((len(ids), k), dtype=np.int64)
    full_lps = np.full((len(ids), k), ABSENT, dtype=np.float32)
    full_ids[start : start + len(completion)] = kd_ids
    full_lps[start : start + len(completion)] = kd_lps
    return Example(ids, labels, full_ids, full_lps)


def build_rollouts(
    config: RecipeConfig,
    tokenizer: Any,
    student_vocab_size: int,
    samples: Sequence[Sample],
    metadata: ShardMetadata,
    *,
    rank: int,
) -> Rollouts:
    """The recipe's :class:`Rollouts`: connects to the teacher, checks it, builds the prompts.

    Errors name the ``on_policy`` field (or ``data.teacher_tokenizer`` when the teacher's
    tokenizer cannot be found locally).
    """
    op, hp = config.on_policy, config.hyperparameters
    scorer = TeacherScorer(
        op.teacher_addresses,
        top_k=op.top_k,
        concurrency=op.concurrency,
        timeout_s=op.timeout_s,
        retry=RetryPolicy(max_attempts=op.max_attempts, base_delay_s=0.2, max_delay_s=5.0),
    )
    try:
        info = scorer.info()
        if op.top_k > (info.max_top_k or MAX_TOP_K):
            raise InvalidArgument("on_policy.top_k", f"{op.top_k} is more than the teacher's maximum {info.max_top_k}")
        teacher_hash = info.tokenizer.content_hash
        if op.support == "student_topk":
            if teacher_hash != tokenizer_content_hash(tokenizer):
                raise InvalidArgument(
                    "on_policy.support",
                    f"student_topk needs a teacher with the student's tokenizer; {info.model_id!r} has "
                    "another: use teacher_topk",
                )
            if not info.scores_candidates:
                raise InvalidArgument(
                    "on_policy.support",
                    f"the teacher's {info.backend} backend cannot score candidate ids (vLLM needs its V2 "
                    "model runner): use teacher_topk",
                )
        teacher_tok = scoring_teacher_tokenizer(info, config.data.teacher_tokenizer, tokenizer)
        aligner = Aligner(teacher_tok, tokenizer, student_vocab_size, info.tokenizer.vocab_size or None)
        # The shards' own prompts are this teacher's only when this teacher made them.
        same_teacher = bool(teacher_hash) and metadata.tokenizer_hash == teacher_hash
        prompts = policy_prompts(
            samples,
            tokenizer,
            config.data.format,
            reuse_teacher_prompts=same_teacher,
            teacher_rendered=metadata.prompt_template == "chat",
            teacher_chat=bool(info.tokenizer.chat_template),
        )
        return Rollouts(
            prompts,
            tokenizer,
            scorer,
            aligner,
            fmt=config.data.format,
            batch_size=hp.batch_size,
            max_new_tokens=op.max_new_tokens,
            temperature=op.temperature,
            top_k=op.top_k,
            support=op.support,
            seed=hp.seed,
            rank=rank,
            packing=config.data.packing,
        )
    except BaseException:
        scorer.close()
        raise


def scoring_teacher_tokenizer(info: TeacherFacts, configured: str, student_tokenizer: Any) -> Any:
    """The tokenizer of the teacher whose Info is ``info``, checked against its content hash.

    Tried in order: what the Info names (a local directory or a registry name), ``configured``
    (``data.teacher_tokenizer``), the student's own. The first whose fingerprint is the teacher's
    wins: the shards may come from another teacher than the one scoring on-policy samples.
    """
    from cotdistill.trainer.data import teacher_tokenizer_ref

    want = info.tokenizer.content_hash
    candidates: list[Any] = []
    ref = teacher_tokenizer_ref("", info)
    if ref.path is not None:
        candidates.append(ref.path)
    if configured:
        candidates.append(configured)
    for candidate in candidates:
        tok = load_tokenizer(candidate)
        if not want or tokenizer_content_hash(tok) == want:
            return tok
    if want and tokenizer_content_hash(student_tokenizer) == want:
        return student_tokenizer
    raise InvalidArgument(
        "data.teacher_tokenizer",
        f"on-policy scoring needs the tokenizer of the teacher {info.model_id!r} (hash {want[:12]}) and none "
        "of its Info name, data.teacher_tokenizer or the student's matches: set data.teacher_tokenizer to a copy",
    )
