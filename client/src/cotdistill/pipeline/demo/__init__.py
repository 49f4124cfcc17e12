"""``make demo``: the whole distillation pipeline on one CPU machine, through the public interfaces.

``python -m cotdistill.pipeline.demo [--quick] [key=value ...]`` builds a tiny teacher (trained
from scratch, cached) and a smaller student with another tokenizer, starts the four services on
loopback, then runs the recipe ``configs/demo.yaml`` with ``cotdistill run`` (sample, filter,
train), evaluates teacher and student with ``cotdistill run`` (evaluate, select), serves the chosen
checkpoint and asks it one question over HTTP. See docs/demo.md.
"""

from cotdistill.pipeline.demo.runner import main

__all__ = ["main"]
