#!/usr/bin/env bash
# One prepared GPU measurement (issue 14, item 6), for a machine with one CUDA GPU:
#   1. our training step on Qwen2.5-0.5B and SmolLM2-135M in bf16: tokens/s, MFU, peak memory;
#   2. the vLLM teacher's tokens/s with top-20 logprobs vs without.
# Results go to bench/results/gpu_*.json (and the console); `python -m bench.run_all` (or
# `make bench`) puts them in BENCHMARKS.md. Without CUDA it says so and exits 0.
#   bench/gpu/run.sh                 # PYTHON=... to pick the interpreter (default .venv/bin/python)
set -uo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD:$PWD/shared/src:$PWD/client/src:$PWD/services/trainer/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 TOKENIZERS_PARALLELISM=false

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "bench/gpu: no CUDA device visible to $PY; nothing measured"
  exit 0
fi
"$PY" -c "import torch; print('bench/gpu:', torch.cuda.get_device_name(0), 'torch', torch.__version__)"
status=0
"$PY" -m bench.gpu.trainer_gpu --model qwen2.5-0.5b --batch 16 --seq 1024 --steps 20 --write || status=1
"$PY" -m bench.gpu.trainer_gpu --model smollm2-135m --batch 32 --seq 1024 --steps 20 --write || status=1
if "$PY" -c "import vllm" 2>/dev/null; then
  "$PY" -m bench.gpu.vllm_topk --model qwen2.5-0.5b --prompts 256 --max-tokens 256 --write || status=1
else
  echo "bench/gpu: vllm is not installed for $PY; the teacher figure is not measured"
fi
exit $status
