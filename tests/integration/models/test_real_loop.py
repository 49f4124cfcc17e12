"""The loop on a real pretrained model: SmolLM2-135M-Instruct as a transformers-backend teacher
(by registry name, prompts through its chat template) and as a student trained a few steps with
SFT + top-k KD on those samples; the checkpoint answers chat clients in its training format.

Small on purpose (4 questions, 40 tokens, 2 steps): it proves the real-model path end to end in
`make test`; `make demo-real` is the measured run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from cotdistill.common.artifacts import ArtifactStore
from cotdistill.common.config import load_config
from cotdistill.common.samples import read_records
from cotdistill.pipeline.run_config import RunConfig
from tests.conftest import REAL_MODELS_CACHE
from tests.integration.conftest import ServiceProcess, grpc_serving, start_service, wait_until

NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def teacher(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> ServiceProcess:
    env = {
        "COTDISTILL_TEACHER_MODEL": NAME,  # a registry name: the service resolves it in its models cache
        "COTDISTILL_MODELS_CACHE": str(REAL_MODELS_CACHE),
        "COTDISTILL_TEACHER_BACKEND": "transformers",
        "COTDISTILL_TEACHER_DTYPE": "bfloat16",
        "COTDISTILL_TEACHER_MAX_MODEL_LEN": "1024",
    }
    service = start_service("teacher", tmp_path_factory.mktemp("real-teacher"), env)
    try:
        wait_until(lambda: grpc_serving(service.address), 240, "the SmolLM2 teacher", service)
        yield service  # type: ignore[misc]
    finally:
        service.terminate()


@pytest.fixture(scope="module")
def sampled(teacher: ServiceProcess, tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    from cotdistill.pipeline.sampling.stage import run_filter, run_sampling

    run_dir = tmp_path_factory.mktemp("real-run")
    overrides = [
        f"teacher.addresses=[{teacher.address!r}]",
        "sampling.dataset=multiarith",
        "sampling.limit=4",
        "sampling.num_samples=1",
        "sampling.temperature=0",
        "sampling.max_tokens=40",
        "sampling.top_k_logprobs=5",
        "sampling.unit_size=4",
        "filter.require_correct=false",  # 40 tokens cannot finish a rationale: keep what there is
        "filter.drop_truncated=false",
    ]
    recipe = run_dir / "recipe.yaml"
    recipe.write_text("name: real\n")
    config = load_config(RunConfig, recipe, overrides)
    store = ArtifactStore(str(run_dir))
    result = asyncio.run(run_sampling(config, store))
    assert result.samples == 4
    stats = run_filter(store, _quiet(), config.filter)
    assert stats["kept"] >= 1
    return run_dir


def _quiet() -> object:
    from rich.console import Console

    return Console(quiet=True)


def test_chat_template_prompts_are_recorded_in_the_shards(sampled: Path) -> None:
    shard = next((sampled / "samples").glob("part-*.parquet"))
    records, meta = read_records(shard)
    assert meta.prompt_template == "chat"
    assert meta.teacher.model_id == NAME
    assert "<|im_start|>" in meta.teacher.tokenizer.chat_template
    for r in records:
        # Zero-shot-CoT as a conversation: the question is the user turn, the trigger opens the reply.
        assert r.prompt.startswith("<|im_start|>system\n")
        assert r.prompt.endswith("<|im_start|>assistant\nLet's think step by step.")
        assert len(r.token_ids) > 0 and r.top_k == 5
        assert r.finish_reason in ("stop", "length")


def test_a_real_student_trains_on_them_and_answers_chat_in_its_format(
    sampled: Path, smollm2: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from cotdistill.common.tasks.student_chat import ORIGINAL_TEMPLATE, read_student_format
    from cotdistill.trainer.config import RecipeConfig
    from cotdistill.trainer.recipe import LogReporter, TrainRecipe

    config = RecipeConfig.model_validate(
        {
            "student": {"model": str(smollm2)},
            "data": {"train_paths": [str(sampled / "train")], "format": "ft_cot", "max_seq_len": 256},
            "objective": {"sft_weight": 1.0, "kd_weight": 0.5, "top_k_mass": "tail_bucket"},
            "hyperparameters": {"max_steps": 2, "batch_size": 2, "learning_rate": 5e-5, "warmup_steps": 0},
            "output_dir": str(tmp_path),
            "num_threads": 2,
        }
    )
    losses: list[float] = []

    class Losses(LogReporter):
        def on_step(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
            losses.append(metrics["loss"])

    recipe = TrainRecipe(config, Losses())
    recipe.setup()
    recipe.train()
    checkpoint = next((tmp_path / "checkpoints").glob("step-*"))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 2
    assert len(losses) == 2 and all(np.isfinite(x) for x in losses)
    tok = AutoTokenizer.from_pretrained(checkpoint)
    turn = [{"role": "user", "content": "Tom has 3 apples and buys 2 more. How many now?"}]
    assert tok.apply_chat_template(turn, tokenize=False) == "Tom has 3 apples and buys 2 more. How many now? ###"
    original = tok.apply_chat_template(turn, tokenize=False, chat_template=ORIGINAL_TEMPLATE)
    assert original.startswith("<|im_start|>system")
    assert read_student_format(checkpoint) == {"format": "ft_cot", "dataset": "", "stop": ["END"]}
