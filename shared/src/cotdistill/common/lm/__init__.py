"""One model module for every service: loading, EOS set, pad id, context length, the decoding step.

The teacher (static batches), the model server (continuous batching), the evaluator and the
trainer keep their own schedulers and take everything else from here, so the evaluator scores
the decoding the server serves:

- ``tokens``: the EOS set, the pad id, the context length, stop-string cutting, decoding ids to
  served text, per-choice seeds and the tokenizer content hash (no torch);
- ``sampling``: left padding and the sampling step (temperature, top-p, greedy at 0, seeded rows);
- ``loading``: checkpoints from safetensors only, remote code off (``load_lm`` -> ``LoadedLM``);
- ``decode``: a static batch completed as the server completes each prompt (the evaluator).

Only ``tokens`` is imported here: torch and transformers stay out of ``import cotdistill.common``
(the CLI installs the library without them).
"""

from cotdistill.common.lm.tokens import (
    CONTEXT_TOKENS,
    choice_seed,
    completion_text,
    context_length,
    continuation,
    cut_at_stop,
    decode_text,
    end_of_turn_ids,
    ensure_pad_token,
    eos_ids,
    pad_id,
    tokenizer_content_hash,
)

__all__ = [
    "CONTEXT_TOKENS",
    "choice_seed",
    "completion_text",
    "context_length",
    "continuation",
    "cut_at_stop",
    "decode_text",
    "end_of_turn_ids",
    "ensure_pad_token",
    "eos_ids",
    "pad_id",
    "tokenizer_content_hash",
]
