"""Bytes per top-k entry (on disk and on the wire) and the KD loss error of the compact format.

Teacher top-20 distributions from three sources:

* ``trained-lm``: a small byte-BPE LM (vocab 2048, 2 layers) trained for a few hundred steps on
  GSM8K rationales (real text from ../shared/data, or the built-in reasoning corpus where that is
  absent), then run teacher-forced on held-out rationales: real LM outputs, Zipf-like ids. The
  student q is the same model earlier in training (a realistic mismatch).
* ``gaussian-4k`` / ``gaussian-32k``: log_softmax of N(0, 3^2) logits over 4,096 / 32,000 ids
  (entropy of the top-20 ~1.3-1.9 nats, like a sampling teacher). Their top-k ids are uniform
  over the vocabulary, which no real LM does: the worst case for the id column.

On disk: the shard's top-k column chunks (Parquet, zstd), compact format (schema 3, see
``cotdistill.common.samples``) vs the int32 + float16 columns of schema 1.
On the wire: the protobuf TokenLogprobs the teacher streams (packed int32 ids, float32
logprobs). KD loss: forward KL over the renormalized teacher top-k, sum p (log p - log q), mean
over tokens, from stored vs exact values.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import write_result
from cotdistill.common.samples import SCHEMA_V1, TOP_COLUMNS, SampleRecord, read_samples, shard_bytes
from cotdistill.v1 import common_pb2

K = 20
TOKENS_PER_SEQ = 128


def kd_forward_kl(top_lp: np.ndarray, top_ids: np.ndarray, student_lp: np.ndarray) -> np.ndarray:
    """Per-token sum p (log p - log q) over the renormalized teacher top-k. Shapes (T, K), (T, V) -> (T,)."""
    logp = top_lp - np.logaddexp.reduce(top_lp, axis=1, keepdims=True)
    q = np.take_along_axis(student_lp, top_ids.astype(np.int64), axis=1)
    return np.asarray((np.exp(logp) * (logp - q)).sum(axis=1))


def kd_forward_kl_tail(top_lp: np.ndarray, top_ids: np.ndarray, student_lp: np.ndarray) -> np.ndarray:
    """The same with a (k+1)-th bucket holding 1 - sum(top-k) on each side (``tail_bucket``). (T,)"""
    q = np.take_along_axis(student_lp, top_ids.astype(np.int64), axis=1)

    def with_tail(x: np.ndarray) -> np.ndarray:
        tail = np.log(np.clip(1 - np.exp(np.logaddexp.reduce(x, axis=1)), 1e-12, None))
        return np.hstack([x, tail[:, None]])

    logp, logq = with_tail(top_lp), with_tail(q)
    return np.asarray((np.exp(logp) * (logp - logq)).sum(axis=1))


def top_k_ids(logprobs: np.ndarray) -> np.ndarray:
    """(T, K) ids of the K largest entries per row, largest first (argpartition, not a full sort)."""
    part = np.argpartition(-logprobs, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(logprobs, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def gaussian(vocab: int, tokens: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(tokens, vocab)).astype(np.float32) * 3.0
    teacher = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    student = 0.6 * logits + rng.normal(size=logits.shape).astype(np.float32)
    student -= np.logaddexp.reduce(student, axis=1, keepdims=True)
    ids = top_k_ids(teacher)
    sampled = ids[:, 0]
    return sampled, ids, np.take_along_axis(teacher, ids, axis=1), student


def trained_lm(tokens: int, steps: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    import torch
    from transformers import AutoModelForCausalLM

    from cotdistill.pipeline.tiny_models import build_causal_lm, reasoning_corpus, train_tokenizer

    try:
        from cotdistill.common.tasks import load_dataset

        texts = [f"Q: {e.question}\nA: {e.rationale}" for e in load_dataset("gsm8k", "train") if e.rationale]
        source = "GSM8K train rationales"
    except Exception:  # no real data beside the checkout
        texts, source = reasoning_corpus(2000), "built-in reasoning corpus"
    tokenizer = train_tokenizer(texts[:4000], "byte_bpe", vocab_size=2048)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        model = AutoModelForCausalLM.from_pretrained(build_causal_lm(Path(tmp) / "lm", tokenizer))
    ids = torch.tensor([t for text in texts[:3000] for t in tokenizer(text + "</s>")["input_ids"]])
    held_out = torch.tensor([t for text in texts[3000:3400] for t in tokenizer(text + "</s>")["input_ids"]])[
        : tokens + 1
    ]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    student_lp = None
    for step in range(steps):
        starts = torch.randint(0, len(ids) - 129, (8,), generator=gen)
        batch = torch.stack([ids[s : s + 129] for s in starts])
        loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step == steps // 3:  # the "student": the same model, less trained
            student_lp = forced_logprobs(model, held_out)
    teacher = forced_logprobs(model, held_out)
    assert student_lp is not None
    top = top_k_ids(teacher)
    return (
        held_out[1:].numpy(),
        top,
        np.take_along_axis(teacher, top, axis=1),
        student_lp,
        f"{source}, loss {loss.item():.2f}",
    )


def forced_logprobs(model: Any, tokens: Any, window: int = 256) -> np.ndarray:
    """Next-token log_softmax (T, V) over ``tokens[:-1]``, in windows the model's context allows."""
    import torch

    out = []
    with torch.no_grad():
        for start in range(0, len(tokens) - 1, window):
            chunk = tokens[start : min(start + window, len(tokens) - 1)]
            out.append(torch.log_softmax(model(input_ids=chunk[None]).logits[0].float(), -1).numpy())
    return np.concatenate(out)


def records(sampled: np.ndarray, ids: np.ndarray, lps: np.ndarray) -> list[SampleRecord]:
    out = []
    for i, start in enumerate(range(0, len(ids), TOKENS_PER_SEQ)):
        sl = slice(start, start + TOKENS_PER_SEQ)
        out.append(
            SampleRecord(
                example_id=f"e{i}",
                sample_index=0,
                prompt="Q",
                rationale="R",
                token_ids=sampled[sl].tolist(),
                token_logprobs=lps[sl, 0].tolist(),
                top_k=K,
                top_ids=ids[sl].reshape(-1).tolist(),
                top_logprobs=lps[sl].reshape(-1).tolist(),
            )
        )
    return out


def top_column_bytes(data: bytes) -> tuple[int, int]:
    """(top-k column bytes, whole file bytes) of a Parquet shard."""
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    top = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            if group.column(c).path_in_schema.split(".")[0] in TOP_COLUMNS:
                top += group.column(c).total_compressed_size
    return top, len(data)


def v1_bytes(recs: list[SampleRecord]) -> bytes:
    """The previous format: int32 ids and float16 logprobs in rank order, zstd."""
    rows = []
    for r in recs:
        row: dict[str, Any] = {name: None for name in SCHEMA_V1.names}
        row.update(
            example_id=r.example_id, sample_index=0, prompt=r.prompt, rationale=r.rationale, dataset="", split=""
        )
        row.update(finish_reason="stop", prompt_tokens=0, top_k=K, token_ids=list(r.token_ids))
        row.update(token_logprobs=np.asarray(r.token_logprobs, np.float16), top_ids=list(r.top_ids))
        row.update(top_logprobs=np.asarray(r.top_logprobs, np.float16))
        rows.append(row)
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA_V1), buffer, compression="zstd")
    return buffer.getvalue()


def measure(name: str, sampled: np.ndarray, ids: np.ndarray, lps: np.ndarray, student: np.ndarray) -> dict[str, Any]:
    recs = records(sampled, ids, lps)
    entries, tokens = ids.size, len(ids)
    new = shard_bytes(recs)
    old = v1_bytes(recs)
    new_top, new_file = top_column_bytes(new)
    old_top, old_file = top_column_bytes(old)
    wire_top = wire_total = 0
    for r in recs:
        top_only = common_pb2.TokenLogprobs(k=K, top_ids=r.top_ids, top_logprobs=r.top_logprobs)
        full = common_pb2.TokenLogprobs(
            token_ids=r.token_ids, token_logprobs=r.token_logprobs, k=K, top_ids=r.top_ids, top_logprobs=r.top_logprobs
        )
        wire_top += top_only.ByteSize()
        wire_total += full.ByteSize()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part.parquet"
        path.write_bytes(new)
        table = read_samples(path)
    exact = kd_forward_kl(lps.astype(np.float64), ids, student)
    stored = kd_forward_kl(table.top_logprobs.astype(np.float64), table.top_ids, student)
    figures = {
        "tokens": tokens,
        "disk_bytes_per_entry": new_top / entries,
        "disk_bytes_per_entry_v1": old_top / entries,
        "disk_bytes_per_token": new_file / tokens,
        "disk_bytes_per_token_v1": old_file / tokens,
        "wire_bytes_per_entry": wire_top / entries,
        "wire_bytes_per_token": wire_total / tokens,
        "kd_loss_exact": float(exact.mean()),
        "kd_loss_abs_error": float(abs(stored.mean() - exact.mean())),
        "kd_token_mean_abs_error": float(np.abs(stored - exact).mean()),
        "kd_token_max_abs_error": float(np.abs(stored - exact).max()),
        "kd_tail_bucket_abs_error": float(
            abs(
                kd_forward_kl_tail(table.top_logprobs.astype(np.float64), table.top_ids, student).mean()
                - kd_forward_kl_tail(lps.astype(np.float64), ids, student).mean()
            )
        ),
        "teacher_top1_p": float(np.exp(lps[:, 0]).mean()),
    }
    print(
        f"{name:13s} disk {figures['disk_bytes_per_entry']:.3f} B/entry (v1 {figures['disk_bytes_per_entry_v1']:.3f}), "
        f"{figures['disk_bytes_per_token']:.1f} B/token (v1 {figures['disk_bytes_per_token_v1']:.1f}); "
        f"wire {figures['wire_bytes_per_entry']:.2f} B/entry, {figures['wire_bytes_per_token']:.1f} B/token; "
        f"KD loss {figures['kd_loss_exact']:.4f} error {figures['kd_loss_abs_error']:.1e} "
        f"(per token mean {figures['kd_token_mean_abs_error']:.1e}, max {figures['kd_token_max_abs_error']:.1e}; "
        f"tail_bucket error {figures['kd_tail_bucket_abs_error']:.1e})"
    )
    return figures


def main() -> None:
    sampled, ids, lps, student, source = trained_lm(tokens=4096)
    results = {"trained-lm": measure("trained-lm", sampled, ids, lps, student)}
    results["trained-lm"]["source"] = source
    results["gaussian-4k"] = measure("gaussian-4k", *gaussian(4096, 8192, 1))
    results["gaussian-32k"] = measure("gaussian-32k", *gaussian(32_000, 2048, 2))
    head = results["trained-lm"]
    write_result(
        "storage",
        title="Top-k logprob storage on disk (top-20, real LM outputs)",
        metric="bytes per top-k entry on disk",
        value=head["disk_bytes_per_entry"],
        baseline_name="int32 ids + float16 logprobs (zstd)",
        baseline_value=head["disk_bytes_per_entry_v1"],
        higher_is_better=False,
        goal="<= 2.0 B/entry, KD loss within 1e-3",
        figures=results,
    )


if __name__ == "__main__":
    main()
