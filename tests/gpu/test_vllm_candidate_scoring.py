"""vLLM's Model Runner V2 scores given candidate ids (``prompt_logprob_token_ids``): the teacher's
logprobs of a student's own candidates agree with a transformers forward pass on the same weights.

Needs CUDA (V2 needs Triton; the CPU build here runs V1, which
``tests/integration/teacher/test_vllm_backends.py`` checks is refused with a clear error).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from cotdistill.teacher.engine import ScoreInput
from cotdistill.teacher.engines.transformers_engine import TransformersEngine
from cotdistill.teacher.engines.vllm_engine import VllmEngine

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="vLLM's Model Runner V2 needs CUDA (Triton)")


async def test_vllm_v2_scores_candidate_ids_like_a_forward_pass(tiny_models: dict[str, Path]) -> None:
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "1"
    vllm_engine = VllmEngine(
        str(tiny_models["teacher"]),
        engine_kwargs={"enforce_eager": True, "dtype": "float32", "max_model_len": 512, "gpu_memory_utilization": 0.2},
    )
    hf = TransformersEngine(str(tiny_models["teacher"]), device="cuda")
    await vllm_engine.start()
    await hf.start()
    try:
        assert vllm_engine.info().scores_candidates
        prompt = vllm_engine.encode(["Tom has"])[0]
        completion = vllm_engine.encode([" 3 apples and 2 pears."], special_tokens=False)[0]
        m = 3
        candidates = [c for t in completion for c in (t, (t + 7) % 300, -1)]
        item = ScoreInput("Tom has", "", prompt, completion, candidates, m)
        (got,) = await vllm_engine.score([item], 5)
        (ref,) = await hf.score([item], 5)
        assert len(got.candidate_logprobs) == m * len(completion)
        for a, b in zip(got.candidate_logprobs, ref.candidate_logprobs, strict=True):
            assert (math.isinf(a) and math.isinf(b)) or abs(a - b) < 1e-3
    finally:
        await vllm_engine.close()
        await hf.close()
