"""The recipe end to end on tiny models: it learns, clips, resumes, checkpoints, stops."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from cotdistill.trainer.checkpoints import list_checkpoints
from cotdistill.trainer.config import RecipeConfig
from cotdistill.trainer.data import build_batches
from cotdistill.trainer.recipe import TrainRecipe
from tests.unit.trainer import synthetic


class Recorder:
    """A Reporter that keeps everything and can ask to stop after a given step."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[tuple[int, dict[str, float]]] = []
        self.checkpoints: list[tuple[int, str, float | None, bool]] = []
        self.validations: list[tuple[int, dict[str, float]]] = []
        self.stop_after = stop_after

    def on_step(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self.steps.append((step, metrics))

    def on_checkpoint(self, step: int, path: str, validation_loss: float | None, is_best: bool) -> None:
        self.checkpoints.append((step, path, validation_loss, is_best))

    def on_validation(self, step: int, metrics: dict[str, float]) -> None:
        self.validations.append((step, metrics))

    def should_stop(self) -> bool:
        return self.stop_after is not None and bool(self.steps) and self.steps[-1][0] >= self.stop_after


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory, task_tokenizers: dict[str, Any]) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("samples")
    return {
        "train": synthetic.write_samples(
            root / "train" / "part-0.parquet", synthetic.words(1000, 1), task_tokenizers["teacher"]
        ),
        "validation": synthetic.write_samples(
            root / "val" / "part-0.parquet", synthetic.words(64, 2), task_tokenizers["teacher"]
        ),
    }


def make_config(models: dict[str, Path], samples: dict[str, Path], out: Path, **sections: Any) -> RecipeConfig:
    raw: dict[str, Any] = {
        "student": {"model": str(models["student"])},
        "data": {"train_paths": [str(samples["train"])], "teacher_tokenizer": str(models["teacher_tokenizer"])},
        "hyperparameters": {"max_steps": 4, "batch_size": 16, "learning_rate": 3e-3, "warmup_steps": 0},
        "output_dir": str(out),
        "num_threads": 1,
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values} if isinstance(values, dict) else values
    return RecipeConfig.model_validate(raw)


def run(
    config: RecipeConfig, reporter: Recorder | None = None, resume_from: str | None = None
) -> tuple[TrainRecipe, Recorder]:
    reporter = reporter or Recorder()
    recipe = TrainRecipe(config, reporter)
    recipe.setup(resume_from=resume_from)
    recipe.train()
    return recipe, reporter


@pytest.mark.parametrize(
    "objective",
    [
        pytest.param({"sft_weight": 1.0, "kd_weight": 0.0}, id="sft"),
        # Distribution matching alone, across different tokenizers: only the aligned top-k teaches.
        pytest.param({"sft_weight": 0.0, "kd_weight": 1.0, "top_k_mass": "tail_bucket"}, id="kd-cross-tokenizer"),
    ],
)
def test_tiny_student_learns_the_copy_task_from_teacher_samples(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path, objective: dict[str, Any]
) -> None:
    config = make_config(
        task_models,
        samples,
        tmp_path,
        objective=objective,
        hyperparameters={"max_steps": 160, "batch_size": 32, "warmup_steps": 20},
        data={"validation_paths": [str(samples["validation"])]},
        log_every_steps=10,
    )
    recipe, reporter = run(config)
    first, last = reporter.steps[0][1]["loss"], reporter.steps[-1][1]["loss"]
    assert last < first / 4, f"loss did not fall enough: {first:.3f} -> {last:.3f}"
    final = reporter.checkpoints[-1]
    assert final[0] == 160 and final[2] is not None
    held_out = synthetic.words(150, 7)
    accuracy = synthetic.accuracy(final[1], held_out)
    assert accuracy >= 0.6, f"accuracy {accuracy:.2f} (chance is 1/26)"
    if objective["kd_weight"]:
        assert recipe.data_stats["kd_matched_tokens"] > 0.5 * recipe.data_stats["kd_tokens"]


def test_gradient_clipping_is_really_applied(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    config = make_config(task_models, samples, tmp_path, hyperparameters={"max_grad_norm": 0.05, "max_steps": 3})
    reporter = Recorder()
    recipe = TrainRecipe(config, reporter)
    recipe.setup()
    seen: list[float] = []

    def record(optimizer: Any, args: Any, kwargs: Any) -> None:
        grads = [p.grad for p in recipe.model.parameters() if p.grad is not None]
        seen.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    recipe.optimizer.register_step_pre_hook(record)
    recipe.train()
    reported = [m["grad_norm"] for _, m in reporter.steps]
    assert len(seen) == 3
    assert all(r > 0.05 for r in reported)  # the raw norm is reported...
    assert all(s == pytest.approx(0.05, rel=1e-3) for s in seen)  # ...and the optimizer sees the clipped one


def test_resume_continues_exactly_where_it_stopped(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    """Counters, data order, optimizer and schedule come back: steps 4-6 repeat bit for bit."""
    hp = {"max_steps": 6, "gradient_accumulation": 2, "warmup_steps": 2, "schedule": "linear"}
    _, full = run(
        make_config(task_models, samples, tmp_path / "a", hyperparameters=hp, checkpoints={"interval_steps": 3})
    )
    resumed_from = str(tmp_path / "a" / "checkpoints" / "step-000003")
    _, second = run(make_config(task_models, samples, tmp_path / "b", hyperparameters=hp), resume_from=resumed_from)
    assert [s for s, _ in second.steps] == [4, 5, 6]
    for (_, a), (_, b) in zip(full.steps[3:], second.steps, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-6)
        assert b["learning_rate"] == pytest.approx(a["learning_rate"])


def test_checkpoints_are_complete_loadable_and_retained(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = make_config(
        task_models,
        samples,
        tmp_path,
        hyperparameters={"max_steps": 6},
        data={"validation_paths": [str(samples["validation"])]},
        checkpoints={"interval_steps": 1, "keep_last": 2},
    )
    _, reporter = run(config)
    assert [c[0] for c in reporter.checkpoints] == [1, 2, 3, 4, 5, 6]
    kept = list_checkpoints(tmp_path)
    best = min(reporter.checkpoints, key=lambda c: (c[2], -c[0]))
    assert {r.step for r in kept} == {5, 6, best[0]}
    assert [r.step for r in kept if r.is_best] == [best[0]]
    newest = Path(kept[-1].path)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "trainer_state.pt", "trainer_state.json"):
        assert (newest / name).is_file(), name
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # no half-written leftovers
    model = AutoModelForCausalLM.from_pretrained(newest)
    tok = AutoTokenizer.from_pretrained(newest)
    assert model.config.vocab_size >= len(tok)


def test_cancellation_stops_after_the_current_step(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    recipe, reporter = run(
        make_config(task_models, samples, tmp_path, hyperparameters={"max_steps": 50}), Recorder(stop_after=2)
    )
    assert recipe.state.step == 2 and recipe.stopped
    assert reporter.checkpoints == []


class StopAtMicroBatch(Recorder):
    """Asks to stop at the n-th ``should_stop`` call: the recipe asks once per micro-batch."""

    def __init__(self, at_call: int) -> None:
        super().__init__()
        self.calls = 0
        self.at_call = at_call

    def should_stop(self) -> bool:
        self.calls += 1
        return self.calls >= self.at_call


def test_cancellation_inside_gradient_accumulation_stops_at_the_next_micro_batch(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    """4 micro-batches a step; stop asked before the 7th: step 2 is dropped half-way through."""
    hp = {"max_steps": 50, "gradient_accumulation": 4}
    reporter = StopAtMicroBatch(at_call=7)
    recipe, _ = run(make_config(task_models, samples, tmp_path, hyperparameters=hp), reporter)
    assert recipe.stopped and reporter.calls == 7  # 6 micro-batches ran, not the 8 of step 2
    assert [s for s, _ in reporter.steps] == [1]
    # Counters are back at the step boundary (a checkpoint now resumes exactly at step 2) and the
    # partial gradients of step 2 are gone.
    assert (recipe.state.step, recipe.state.micro_step, recipe.state.batch_in_epoch) == (1, 4, 4)
    assert all(p.grad is None for p in recipe.model.parameters())


def test_lora_in_bf16_keeps_a_frozen_bf16_base_without_optimizer_state(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    config = make_config(
        task_models,
        samples,
        tmp_path,
        student={"lora": {"rank": 4}},
        hyperparameters={"precision": "bf16", "max_steps": 2},
    )
    recipe, reporter = run(config)
    named = dict(recipe.model.named_parameters())
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = [p for n, p in named.items() if n not in trainable]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)  # the base in bf16
    assert all(p.dtype == torch.float32 for n, p in named.items() if n in trainable)  # adapters fp32
    state_params = {id(p) for p in recipe.optimizer.state}
    assert state_params == {id(named[n]) for n in trainable}  # AdamW moments only for the adapters
    assert all(p.grad is None for p in frozen)
    assert math.isfinite(reporter.steps[-1][1]["loss"])


def test_packed_rows_give_the_same_loss_as_padded_examples(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    """Block-diagonal attention from restarting position_ids: no example sees another."""
    config = make_config(task_models, samples, tmp_path, objective={"kd_weight": 0.5})
    recipe = TrainRecipe(config)
    recipe.setup()
    examples = []
    batch = recipe.train_loader.dataset.batches[0]
    assert "attention_mask" not in batch  # packed
    from cotdistill.trainer.data import ExampleBuilder, load_samples

    loaded, _ = load_samples([str(samples["validation"])])
    builder = ExampleBuilder(
        recipe.tokenizer, fmt="ft_cot", encoder_decoder=False, max_seq_len=0, top_k_logprobs=recipe.top_k_logprobs
    )
    examples = builder.build(loaded[:12])
    common = {
        "batch_size": 12,
        "pad_id": recipe.tokenizer.pad_token_id,
        "seed": 0,
        "top_k_logprobs": recipe.top_k_logprobs,
    }
    packed = build_batches(examples, packing=True, **common)[0]
    padded = build_batches(examples, packing=False, **common)[0]
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]
    recipe.model.eval()
    with torch.no_grad():
        loss_packed, parts_packed, n_packed = recipe._loss(packed)
        loss_padded, parts_padded, n_padded = recipe._loss(padded)
    assert n_packed == n_padded
    assert loss_packed.item() == pytest.approx(loss_padded.item(), rel=1e-5)
    assert parts_packed["kd"].item() == pytest.approx(parts_padded["kd"].item(), rel=1e-5)


@pytest.mark.parametrize(
    ("student", "hyperparameters", "extra"),
    [
        pytest.param("student", {"precision": "bf16", "gradient_checkpointing": True}, {}, id="bf16-checkpointing"),
        pytest.param("padded", {}, {"objective": {"kd_weight": 1.0}}, id="padded-vocab-kd"),
        pytest.param("t5", {}, {"data": {"format": "ft_cot_t5"}, "objective": {"kd_weight": 0.5}}, id="t5-kd"),
        pytest.param("student", {}, {"student": {"lora": {"rank": 4}}}, id="lora"),
        pytest.param(
            "student", {}, {"data": {"packing": False, "answer_only_fraction": 0.5}}, id="bucketing-flan-mixture"
        ),
    ],
)
def test_student_variants_train_and_save(
    task_models: dict[str, Path],
    samples: dict[str, Path],
    tmp_path: Path,
    student: str,
    hyperparameters: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    extra = {k: dict(v) for k, v in extra.items()}
    extra.setdefault("student", {})["model"] = str(task_models[student])
    config = make_config(task_models, samples, tmp_path, hyperparameters={"max_steps": 3, **hyperparameters}, **extra)
    recipe, reporter = run(config)
    assert len(reporter.steps) == 3 and all(math.isfinite(m["loss"]) for _, m in reporter.steps)
    path = Path(reporter.checkpoints[-1][1])
    assert (path / "model.safetensors").is_file()
    if student == "t5":
        from transformers import AutoModelForSeq2SeqLM

        AutoModelForSeq2SeqLM.from_pretrained(path)
    if "lora" in extra.get("student", {}):
        assert (path / "adapter" / "adapter_config.json").is_file()
        from safetensors.torch import load_file

        merged = load_file(path / "model.safetensors")
        assert not any("lora" in name for name in merged)  # the served model has the adapters merged
    if extra.get("data", {}).get("answer_only_fraction"):
        assert 0.3 < recipe.data_stats["answer_only"] / recipe.data_stats["examples"] < 0.7


def test_standalone_entry_point_runs_a_yaml_recipe(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cotdistill.trainer.recipe import main

    path = tmp_path / "run.yaml"
    path.write_text(
        f"student:\n  model: {task_models['student']}\n"
        f"data:\n  train_paths: [{samples['train']}]\n"
        f"hyperparameters:\n  max_steps: 50\n  batch_size: 8\n"
        f"output_dir: {tmp_path / 'out'}\nnum_threads: 1\n"
    )
    assert main([str(path), "hyperparameters.max_steps=2"]) == 0
    assert [r.step for r in list_checkpoints(tmp_path / "out")] == [2]
    assert main([str(path), "objective.kd_weight=1"]) == 2
    assert "data.teacher_tokenizer" in capsys.readouterr().err


def test_distributed_hooks_wrap_the_model_in_ddp_and_shard_the_data(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    """The service's path, in one process: DDP (gloo, world 1) + a DistributedSampler."""
    import torch.distributed as dist
    from safetensors.torch import load_file
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    from cotdistill.trainer.recipe import DistributedHooks

    class DDPHooks(DistributedHooks):
        def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
            return DistributedDataParallel(model)

        def prepare_data_loader(self, loader: Any) -> Any:
            sampler = DistributedSampler(loader.dataset, num_replicas=1, rank=0, shuffle=True, seed=0)
            return DataLoader(loader.dataset, batch_size=None, sampler=sampler)

    from tests.conftest import free_port

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        config = make_config(
            task_models, samples, tmp_path, hyperparameters={"max_steps": 2, "gradient_accumulation": 2}
        )
        recipe = TrainRecipe(config, Recorder(), DDPHooks())
        recipe.setup()
        assert isinstance(recipe.model, DistributedDataParallel)
        recipe.train()
    finally:
        dist.destroy_process_group()
    weights = load_file(Path(list_checkpoints(tmp_path)[-1].path) / "model.safetensors")
    assert weights and not any(name.startswith("module.") for name in weights)


def test_lora_run_resumes_from_its_adapter(
    task_models: dict[str, Path], samples: dict[str, Path], tmp_path: Path
) -> None:
    hp = {"max_steps": 4}
    lora = {"lora": {"rank": 4, "alpha": 8}}
    _, full = run(
        make_config(
            task_models, samples, tmp_path / "a", hyperparameters=hp, student=lora, checkpoints={"interval_steps": 2}
        )
    )
    resume_from = str(tmp_path / "a" / "checkpoints" / "step-000002")
    recipe, second = run(
        make_config(task_models, samples, tmp_path / "b", hyperparameters=hp, student=lora), resume_from=resume_from
    )
    assert [s for s, _ in second.steps] == [3, 4]
    for (_, a), (_, b) in zip(full.steps[2:], second.steps, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    trainable = sum(p.numel() for p in recipe.optimizer.param_groups[0]["params"])
    assert trainable < sum(p.numel() for p in recipe.model.parameters()) / 5  # only the adapters train
