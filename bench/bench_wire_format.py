"""Top-k logprobs on the wire: packed protobuf columns vs the JSON an OpenAI-style API sends.

One Sample result of 64 tokens with top-20 candidates, built from ``torch.topk(...).tolist()``
and serialized. Baseline: the same content as OpenAI ``logprobs.content[].top_logprobs`` JSON.
"""

from __future__ import annotations

import json

import torch

from bench.common import timeit, write_result
from cotdistill.v1 import common_pb2, teacher_pb2

T, K, VOCAB = 64, 20, 32_000


def main() -> None:
    torch.manual_seed(0)
    logprobs = torch.log_softmax(torch.randn(T, VOCAB), dim=-1)
    top = torch.topk(logprobs, K, dim=-1)
    ids = top.indices.reshape(-1).tolist()
    lps = top.values.reshape(-1).tolist()
    sampled = top.indices[:, 0].tolist()
    sampled_lp = top.values[:, 0].tolist()

    def packed() -> bytes:
        msg = teacher_pb2.SampleResponse(
            text="x" * 200,
            logprobs=common_pb2.TokenLogprobs(
                token_ids=sampled, token_logprobs=sampled_lp, k=K, top_ids=ids, top_logprobs=lps
            ),
        )
        return msg.SerializeToString()

    def openai_json() -> bytes:
        content = [
            {
                "token": f"t{sampled[t]}",
                "logprob": sampled_lp[t],
                "top_logprobs": [{"token": f"t{ids[t * K + j]}", "logprob": lps[t * K + j]} for j in range(K)],
            }
            for t in range(T)
        ]
        return json.dumps({"text": "x" * 200, "logprobs": {"content": content}}).encode()

    packed_s, json_s = timeit(packed), timeit(openai_json)
    packed_bytes, json_bytes = len(packed()), len(openai_json())
    write_result(
        "wire_format",
        title="Sample result encoding (64 tokens x top-20)",
        metric="messages/s",
        value=1 / packed_s,
        baseline_name="OpenAI-style JSON",
        baseline_value=1 / json_s,
        goal="packed columns, not nested messages",
        figures={
            "packed_bytes": packed_bytes,
            "json_bytes": json_bytes,
            "packed_bytes_per_topk_entry": packed_bytes / (T * K),
            "json_bytes_per_topk_entry": json_bytes / (T * K),
        },
    )


if __name__ == "__main__":
    main()
