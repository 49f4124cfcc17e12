"""The scoring job: each work unit is one ``Score`` call, on whichever replica the pool picks.

The unit's rationales go to the teacher with its own prompt for each question: a conversation
(``ScoreItem.chat``) when the teacher's chat template is used, which the replica renders exactly
as it renders ``Sample``'s chat prompts, or the raw prompt text. The replica returns the prompt it
saw; each row of the unit's shard records it with the teacher-forced tokens and top-k, so a
scored shard reads as a sampled one (``prompt``, ``rationale`` = the scored text, ``token_ids``,
``top_ids``...), and the shard metadata says it was scored (``job.kind: score``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.errors import CotdistillError
from cotdistill.common.grpc_client import Replica, ReplicaPool
from cotdistill.common.retry import IncompleteUnit
from cotdistill.common.samples import MAX_TOP_K, SampleRecord, TeacherFacts
from cotdistill.pipeline.sampling.job import UnitJob, chat_message, use_chat_template
from cotdistill.pipeline.sampling.units import WorkUnit
from cotdistill.pipeline.scoring.units import ScoreRef, ScoreSpec
from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc


class ScoringJob(UnitJob):
    """Scores the rationales of ``units`` (:class:`ScoreRef` examples) not yet in the manifest."""

    spec: ScoreSpec

    def __init__(
        self, spec: ScoreSpec, units: Sequence[WorkUnit], store: ArtifactStore, pool: ReplicaPool, **kwargs: Any
    ) -> None:
        super().__init__(spec, units, store, pool, **kwargs)
        self._use_chat = False

    @property
    def rows_per_example(self) -> int:
        return 1

    def _prepare(self, teacher: TeacherFacts) -> None:
        k = self.spec.params.top_k_logprobs
        if k > (teacher.max_top_k or MAX_TOP_K):
            raise CotdistillError(f"scoring.top_k_logprobs: {k} is more than the teacher's maximum {teacher.max_top_k}")
        self._use_chat = use_chat_template(self.spec.params.prompt_template, teacher, "scoring.prompt_template")

    def _shard_metadata(self, teacher: TeacherFacts) -> dict[str, Any]:
        return {"logprob_mode": "raw", "prompt_template": "chat" if self._use_chat else "raw"}

    def _item(self, ref: ScoreRef, position: int) -> teacher_pb2.ScoreItem:
        completion = ref.completion(self._use_chat)
        if self._use_chat and ref.chat is not None:
            return teacher_pb2.ScoreItem(id=str(position), chat=chat_message(ref.chat), completion=completion)
        return teacher_pb2.ScoreItem(id=str(position), prompt=ref.prompt, completion=completion)

    async def _attempt(self, unit: WorkUnit, replica: Replica, attempt: int) -> list[SampleRecord]:
        refs = [_ref(e) for e in unit.examples]
        request = teacher_pb2.ScoreRequest(
            items=[self._item(r, i) for i, r in enumerate(refs)], top_k_logprobs=self.spec.params.top_k_logprobs
        )
        stub = teacher_pb2_grpc.TeacherServiceStub(replica.channel)
        reply = await stub.Score(request, timeout=self.timeout_s)
        if [c.id for c in reply.completions] != [str(i) for i in range(len(refs))]:
            raise IncompleteUnit(f"{replica.address} answered {len(reply.completions)} of {len(refs)} items")
        return [self._record(ref, done) for ref, done in zip(refs, reply.completions, strict=True)]

    def _record(self, ref: ScoreRef, done: teacher_pb2.ScoredCompletion) -> SampleRecord:
        lp = done.logprobs
        return SampleRecord(
            example_id=ref.id,
            sample_index=ref.sample_index,
            prompt=done.prompt_text or ref.prompt,
            rationale=ref.completion(self._use_chat),  # exactly the text the scored tokens spell
            dataset=ref.dataset,
            split=ref.split,
            answer_text=ref.answer_text,
            prediction=ref.prediction,
            gold=ref.gold,
            correct=ref.correct,
            finish_reason=ref.finish_reason,
            prompt_tokens=done.prompt_tokens,
            token_ids=lp.token_ids,
            token_logprobs=lp.token_logprobs,
            top_k=lp.k,
            top_ids=lp.top_ids,
            top_logprobs=lp.top_logprobs,
        )


def _ref(example: object) -> ScoreRef:
    if not isinstance(example, ScoreRef):
        raise TypeError(f"a scoring unit holds ScoreRef items, not {type(example).__name__}")
    return example
