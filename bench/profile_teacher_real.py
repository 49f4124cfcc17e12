"""Where the transformers teacher engine spends its time on the real teacher (a tool, not a benchmark).

``python -m bench.profile_teacher_real [--dtype auto|float32|bfloat16] [--threads N]
[--questions 8] [--tokens 32]`` runs a small slice of the ``teacher_real_engines`` workload
(chat prompts x D=2, top-20) through ``TransformersEngine`` and splits the wall time into the
prefill forward, the decode forwards and everything else (log-softmax, sampling, top-k,
bookkeeping). Not run by ``make bench``; docs/real-models.md quotes what it showed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from bench.real_teacher import sample, transformers_engine, workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    work = workload(args.questions)
    engine = transformers_engine(work.model_dir, dtype=args.dtype, threads=args.threads)
    loop = asyncio.new_event_loop()
    start = time.perf_counter()
    loop.run_until_complete(engine.start())
    print(f"loaded in {time.perf_counter() - start:.1f} s: {engine.info().extra}")
    forwards: list[float] = []
    forward = engine.model.forward

    def timed(*a: Any, **kw: Any) -> Any:
        begin = time.perf_counter()
        out = forward(*a, **kw)
        forwards.append(time.perf_counter() - begin)
        return out

    engine.model.forward = timed
    start = time.perf_counter()
    completions = loop.run_until_complete(sample(engine, work, n=2, max_tokens=args.tokens))
    total = time.perf_counter() - start
    loop.run_until_complete(engine.close())
    tokens = sum(len(c.scores.token_ids) for c in completions)
    prefill, decode = forwards[0], sum(forwards[1:])
    print(
        f"{args.dtype}, {args.threads or 'default'} thread(s): {tokens} tokens in {total:.1f} s = "
        f"{tokens / total:.1f} tok/s; prefill {prefill:.1f} s, {len(forwards) - 1} decode forwards "
        f"{decode:.1f} s, rest {total - prefill - decode:.1f} s; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
