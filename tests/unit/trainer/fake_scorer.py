"""A teacher's Score behind the narrow interface the rollouts use (``info``, ``score``, ``stats``,
``close``), for unit tests: it tokenizes each completion with a real tokenizer and returns a
deterministic top-k (the token itself first, then its neighbours)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cotdistill.common.lm import tokenizer_content_hash
from cotdistill.common.samples import TeacherFacts, TokenizerFacts
from cotdistill.trainer.teacher_client import ScoreQuery, ScoreResult, ScoringStats


@dataclass
class FakeScorer:
    tokenizer: Any
    tokenizer_dir: Path
    k: int = 4
    scores_candidates: bool = True
    chat_template: str = ""
    queries: list[ScoreQuery] = field(default_factory=list)
    stats: ScoringStats = field(default_factory=ScoringStats)
    closed: bool = False

    def info(self) -> TeacherFacts:
        return TeacherFacts(
            model_id="fake-teacher",
            backend="transformers",
            max_top_k=20,
            scores_candidates=self.scores_candidates,
            tokenizer=TokenizerFacts(
                name=str(self.tokenizer_dir),
                vocab_size=len(self.tokenizer),
                content_hash=tokenizer_content_hash(self.tokenizer),
                chat_template=self.chat_template,
            ),
        )

    def score(self, queries: Sequence[ScoreQuery]) -> list[ScoreResult]:
        self.queries.extend(queries)
        out = []
        vocab = len(self.tokenizer)
        for q in queries:
            ids = list(q.completion_ids) or self.tokenizer(q.completion, add_special_tokens=False)["input_ids"]
            t = len(ids)
            top = np.array([[(i + j) % vocab for j in range(self.k)] for i in ids], dtype=np.int64).reshape(t, self.k)
            lps = np.tile(np.log(np.array([0.7] + [0.3 / (self.k - 1)] * (self.k - 1))), (t, 1)).astype(np.float32)
            candidates = None
            if q.candidates_per_token:
                cand = np.asarray(q.candidate_ids, dtype=np.int64).reshape(t, q.candidates_per_token)
                candidates = np.where(cand >= 0, -0.1 * (1 + np.arange(q.candidates_per_token)), -math.inf)
                candidates = candidates.astype(np.float32)
            out.append(ScoreResult(np.asarray(ids, dtype=np.int64), lps[:, 0].copy(), top, lps, candidates, 5))
            self.stats.record_call(0.01, 1, t)
            self.stats.busy_seconds += 0.01
        return out

    def close(self) -> None:
        self.closed = True
