"""Our training step on one GPU: tokens/s, MFU and peak memory of a bf16 student.

The step is the recipe's (``cotdistill.trainer.recipe``): ``StudentLM`` (backbone, LM head and
loss a chunk of supervised positions at a time), bf16 autocast over fp32 master weights, fused
AdamW, gradient clipping. Batches are random token ids (``--batch`` rows of ``--seq`` tokens,
the first quarter of each row a prompt without loss); weights are random (``bench.gpu.models``).
MFU counts 6 N FLOPs per token for the weights plus 12 L H T for attention (the PaLM
convention) against the device's dense bf16 peak (``--peak-tflops``, else looked up by name).

    python -m bench.gpu.trainer_gpu --model qwen2.5-0.5b --batch 16 --seq 1024   # on a GPU
    python -m bench.gpu.trainer_gpu --model tiny --device cpu --steps 2          # the CPU check
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from typing import Any

# Dense bf16 peak of known devices, TFLOP/s (vendor data sheets, no sparsity).
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():
        if key in device_name:
            return value
    return None


def measure(model_name: str, device: str, batch: int, seq: int, steps: int, warmup: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from bench.gpu.models import build_config
    from cotdistill.trainer.objectives import ObjectiveConfig
    from cotdistill.trainer.recipe import StudentLM, make_adamw

    torch.manual_seed(0)
    config = build_config(model_name)
    dev = torch.device(device)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(dev)
    params = sum(p.numel() for p in model.parameters())
    student = StudentLM(model, False, ObjectiveConfig(), compute_dtype=torch.bfloat16).to(dev)
    student.train()
    optimizer = make_adamw([p for p in student.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.0)
    ids = torch.randint(0, config.vocab_size, (batch, seq), device=dev)
    labels = torch.roll(ids, -1, dims=1)
    labels[:, : seq // 4] = -100
    labels[:, -1] = -100
    data = {
        "input_ids": ids,
        "labels": labels,
        "position_ids": torch.arange(seq, device=dev).expand(batch, seq),
        "attention_mask": torch.ones_like(ids),
    }
    select = (labels.flatten() != -100).nonzero().squeeze(1)

    def step() -> float:
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss, _ = student(data, select)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    loss = 0.0
    for _ in range(steps):
        loss = step()
    sync()
    seconds = time.perf_counter() - started
    tokens_per_second = batch * seq * steps / seconds
    flops_per_token = 6 * params + 12 * config.num_hidden_layers * config.hidden_size * seq
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = peak_tflops(name)
    memory = (
        torch.cuda.max_memory_allocated(dev) / 2**30
        if dev.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    return {
        "model": model_name,
        "parameters": params,
        "device": name,
        "batch": batch,
        "seq": seq,
        "steps": steps,
        "seconds": round(seconds, 3),
        "tokens_per_second": round(tokens_per_second, 1),
        "tflops_achieved": round(tokens_per_second * flops_per_token / 1e12, 2),
        "peak_tflops": peak,
        "mfu": round(tokens_per_second * flops_per_token / (peak * 1e12), 4) if peak else None,
        "peak_memory_gib": round(memory, 2),
        "final_loss": round(loss, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--write", action="store_true", help="write bench/results/gpu_trainer_<model>.json")
    args = parser.parse_args()
    if args.peak_tflops:
        PEAK_TFLOPS["custom"] = args.peak_tflops
    result = measure(args.model, args.device, args.batch, args.seq, args.steps, args.warmup)
    if args.peak_tflops and result["mfu"] is None:
        flops = result["tflops_achieved"]
        result.update(peak_tflops=args.peak_tflops, mfu=round(flops / args.peak_tflops, 4))
    print(json.dumps(result), flush=True)
    if args.write:
        from bench.common import write_result

        write_result(
            f"gpu_trainer_{args.model.replace('.', '_').replace('-', '_')}",
            title=f"Training step on one GPU ({result['device']}): {args.model}, bf16, batch {args.batch}x{args.seq}",
            metric="MFU",
            value=float(result["mfu"] or 0.0),
            baseline_name="goal",
            baseline_value=0.40,
            goal="MFU >= 40% for a 0.5B student in bf16",
            figures=result,
        )


if __name__ == "__main__":
    main()
