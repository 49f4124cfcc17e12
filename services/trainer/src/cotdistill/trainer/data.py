"""Teacher samples -> tokenized student examples -> micro-batches (packed or length-bucketed).

Pipeline, once at setup (the tensors are small; building them up front keeps the loop plain):

1. :func:`load_samples` reads Parquet shards (``cotdistill.common.samples``) or JSONL into
   :class:`Sample` records (question, rationale, answer, teacher tokens + top-k).
2. :func:`render_pair` turns a sample into a (prompt, completion) pair in the student format
   (``ft_cot``: ``{q} ###`` -> `` {r} --> {a} END``); a seeded ``answer_only_fraction`` of them
   become answer-only (Flan mixtures).
3. :class:`ExampleBuilder` tokenizes, puts the loss on the completion only, and attaches the KD
   targets (teacher top-k aligned to the student's tokens, :mod:`cotdistill.common.alignment`).
4. :func:`build_batches` groups ``batch_size`` examples per micro-batch and either packs them
   into as few rows as fit (``position_ids`` restart per example, which makes Hugging Face
   attention block-diagonal: no cross-example attention, no padding compute) or pads a batch of
   similar lengths (bucketing).

Labels are pre-shifted: ``labels[p]`` is the token to predict from position p (-100 = no loss),
and ``kd_ids[p]``/``kd_logprobs[p]`` are the teacher's candidates for that same token.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cotdistill.common.alignment import ABSENT, Aligner, TeacherTokens
from cotdistill.common.chat import last_user_message
from cotdistill.common.errors import InvalidArgument, NotFound
from cotdistill.common.models import is_registry_name, resolve_model
from cotdistill.common.samples import ShardMetadata, TeacherFacts

IGNORE = -100
# KD targets are stored compactly (they live for the whole run, one (T, k) pair per sequence):
# int32 ids and fp16 logprobs (the sample shards hold fp16 already); widened after gathering.
KD_ID_DTYPE = np.int32
KD_LOGPROB_DTYPE = np.float16


# ---- samples ------------------------------------------------------------------------------


@dataclass
class Sample:
    """One teacher sample as the trainer needs it."""

    question: str
    rationale: str
    answer: str
    teacher: TeacherTokens | None = None
    dataset: str = ""
    prompt: str | None = None  # pre-rendered student prompt/completion (JSONL), bypasses formats
    completion: str | None = None
    teacher_prompt: str | None = None  # the prompt the teacher saw (shards): on-policy Score reuses it


def _files(paths: Sequence[str], field_name: str) -> tuple[list[Path], list[Path]]:
    parquet: list[Path] = []
    jsonl: list[Path] = []
    for i, raw in enumerate(paths):
        more_parquet, more_jsonl = _files_of(raw, f"{field_name}[{i}]")
        parquet.extend(more_parquet)
        jsonl.extend(more_jsonl)
    return parquet, jsonl


def _files_of(raw: str, field: str) -> tuple[list[Path], list[Path]]:
    """(Parquet shards, JSONL files) of one training input: a file, or a folder of them."""
    p = Path(raw)
    if not p.exists():
        raise NotFound(f"{field}: no such file or directory: {p}")
    if p.is_dir():
        return sorted(p.glob("*.parquet")), sorted(p.glob("*.jsonl"))
    if p.suffix == ".parquet":
        return [p], []
    if p.suffix in (".jsonl", ".json"):
        return [], [p]
    raise InvalidArgument(field, f"{p}: expected *.parquet or *.jsonl")


@dataclass(frozen=True)
class TrainingData:
    """The training inputs as far as they are read before a run is queued."""

    top_k: int  # teacher candidates per token in the samples (0: none carry top-k logprobs)
    metadata: ShardMetadata  # the first Parquet shard's (empty for JSONL-only data)


def inspect_training_data(paths: Sequence[str], field_name: str) -> TrainingData:
    """Open every training input once before a run is queued, so a file that is not sample data
    fails the request (naming ``field_name[i]`` and file:line) instead of a Ray worker, and learn
    what the KD checks need (top-k width, the teacher recorded in the shards) on the way.

    Parquet shards: the footer and the ``top_k`` column (:func:`~cotdistill.common.samples.inspect_shard`).
    JSONL: the first record must be a JSON object with ``question``, ``prompt`` or ``completion``;
    the rest of the file is read by the workers, which report a bad line with its file:line.
    """
    from cotdistill.common.samples import inspect_shard

    top_k, metadata = 0, None
    for i, raw in enumerate(paths):
        field = f"{field_name}[{i}]"
        parquet, jsonl = _files_of(raw, field)
        if not parquet and not jsonl:
            raise InvalidArgument(field, f"no *.parquet or *.jsonl files in {raw}")
        for path in parquet:
            try:
                shard = inspect_shard(path)
            except ValueError as err:
                raise InvalidArgument(field, f"{path}: {err}") from None
            metadata = shard.metadata if metadata is None else metadata
            top_k = top_k or shard.top_k
        for path in jsonl:
            top = _check_jsonl_head(path, field).get("top_ids")
            top_k = top_k or (len(top[0]) if top else 0)
    return TrainingData(top_k, metadata or ShardMetadata())


def _check_jsonl_head(path: Path, field: str) -> dict[str, Any]:
    """The first record of a JSONL file, checked to be a sample."""
    try:
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InvalidArgument(field, f"{path}:{line_no}: not JSON lines ({err.msg})") from None
                if not isinstance(row, dict) or not {"question", "prompt", "completion"} & set(row):
                    raise InvalidArgument(
                        field, f"{path}:{line_no}: a sample needs 'question' (or 'prompt'/'completion')"
                    )
                return row
    except UnicodeDecodeError:
        raise InvalidArgument(field, f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise InvalidArgument(field, f"{path}: cannot be read ({err.strerror})") from None
    raise InvalidArgument(field, f"{path}: no samples (the file is empty)")


def load_samples(
    paths: Sequence[str], *, only_correct: bool = True, field_name: str = "data.train_paths"
) -> tuple[list[Sample], ShardMetadata]:
    """Read teacher samples; returns them with the first shard's metadata (teacher, tokenizer...)."""
    from cotdistill.common.samples import read_samples

    parquet, jsonl = _files(paths, field_name)
    samples: list[Sample] = []
    metadata = ShardMetadata()
    if parquet:
        table = read_samples([str(p) for p in parquet])
        metadata = table.metadata
        # Prompts rendered through the teacher's chat template: the question is the last user turn.
        template = metadata.teacher.tokenizer.chat_template if metadata.prompt_template == "chat" else ""
        for i in range(len(table)):
            if only_correct and table.correct[i] is False:
                continue
            sl = table.tokens(i)
            teacher = None
            if table.k and sl.stop > sl.start:
                teacher = TeacherTokens(table.token_ids[sl].astype(np.int64), table.top_ids[sl], table.top_logprobs[sl])
            answer = table.prediction[i] if table.prediction[i] is not None else table.gold[i]
            question = question_from_prompt(table.prompt[i], template)
            samples.append(Sample(question, table.rationale[i], answer or "", teacher, teacher_prompt=table.prompt[i]))
    for path in jsonl:
        samples.extend(_read_jsonl(path, only_correct))
    if not samples:
        raise InvalidArgument(field_name, f"no usable samples in {', '.join(paths)}")
    return samples, metadata


def _read_jsonl(path: Path, only_correct: bool) -> Iterable[Sample]:
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InvalidArgument("data", f"{path}:{line_no}: invalid JSON: {err.msg}") from None
            if only_correct and row.get("correct") is False:
                continue
            teacher = None
            if row.get("top_ids"):
                top_ids = np.asarray(row["top_ids"], dtype=np.int64)
                teacher = TeacherTokens(
                    np.asarray(row["token_ids"], dtype=np.int64),
                    top_ids,
                    np.asarray(row["top_logprobs"], dtype=np.float32),
                )
            if "completion" in row:
                yield Sample(
                    row.get("prompt", ""), "", "", teacher, prompt=row.get("prompt", ""), completion=row["completion"]
                )
                continue
            question = row.get("question", row.get("prompt"))
            if question is None:
                raise InvalidArgument("data", f"{path}:{line_no}: needs 'question' (or 'prompt'/'completion')")
            answer = row.get("answer", row.get("prediction", row.get("gold", "")))
            yield Sample(question, row.get("rationale", ""), str(answer or ""), teacher, dataset=row.get("dataset", ""))


@dataclass
class TeacherTokenizerRef:
    """Where the teacher's tokenizer is, as far as the config and the shard metadata say."""

    path: str | None  # a local tokenizer directory, when one is known
    content_hash: str | None  # TokenizerInfo.content_hash recorded by the sampling job
    vocab_size: int | None  # the teacher's embedding rows (may exceed the tokenizer's length)


def teacher_tokenizer_ref(configured: str, teacher: TeacherFacts) -> TeacherTokenizerRef:
    """Resolve the teacher tokenizer from ``data.teacher_tokenizer`` or what the samples (or a
    replica's Info) say about the teacher."""
    candidates = [configured, teacher.tokenizer.name, teacher.model_id]
    path = next((c for c in candidates if c and Path(c).is_dir()), None)
    if path is None and is_registry_name(candidates[1]):
        # The teacher served a registry model: its tokenizer materializes from the same pinned source.
        path = str(resolve_model(candidates[1], need_weights=False))
    return TeacherTokenizerRef(path, teacher.tokenizer.content_hash or None, teacher.tokenizer.vocab_size or None)


# ---- formats ------------------------------------------------------------------------------

# Answer-only partner of each CoT format, for Flan-style CoT + answer-only mixtures.
_ANSWER_PARTNER = {
    "ft_cot": "answer_only",
    "ft_cot_t5": "answer_only",
    "fu_zs_cot": "fu_zs_answer",
    "fu_ic_cot": "fu_ic_answer",
}
_TEACHER_QUESTION = re.compile(r"(?:^|\n)(?:Q|Question): (.*?)\n(?:A:|Let's think)", re.DOTALL)


def question_from_prompt(prompt: str, chat_template: str = "") -> str:
    """The question inside a teacher prompt (Zero-shot-CoT / few-shot / Fu et al.), else the prompt.

    Teacher prompts wrap the question ("Q: {q}\\nA: Let's think step by step."), after any
    exemplars; the student format re-wraps it its own way, so the last question block is taken.
    A prompt rendered through the teacher's ``chat_template`` holds the question as its last user
    turn (``tasks.teacher_chat_prompt``): that turn's text, without the template's markup.
    """
    if chat_template:
        question = last_user_message(prompt, chat_template)
        if question is not None:
            return question.strip()
    matches = _TEACHER_QUESTION.findall(prompt)
    return matches[-1].strip() if matches else prompt.strip()


def available_formats() -> set[str]:
    """Student formats of ``cotdistill.common.tasks`` (Fine-tune-CoT, Fu et al.'s four, Flan)."""
    from cotdistill.common.tasks import list_formats

    return {f.name for f in list_formats("student")}


def answer_only_partner(fmt: str) -> str:
    """The answer-only format mixed into ``fmt`` (Flan mixtures)."""
    if fmt in _ANSWER_PARTNER:
        return _ANSWER_PARTNER[fmt]
    m = re.fullmatch(r"flan_cot(_fs)?_(\d+)", fmt)
    if m:
        fs = m.group(1) or ""
        partners = sorted(n for n in available_formats() if re.fullmatch(rf"flan_answer{fs}_\d+", n))
        if partners:
            return partners[int(m.group(2)) % len(partners)]
    return fmt if not _uses_rationale(fmt) else "answer_only"


def _uses_rationale(fmt: str) -> bool:
    from cotdistill.common.tasks import list_formats

    return any(f.name == fmt and f.uses_rationale for f in list_formats("student"))


def render_pair(sample: Sample, fmt: str, answer_only: bool) -> tuple[str, str, bool]:
    """(prompt, completion, completion_spells_the_teacher_text) of one sample."""
    from cotdistill.common.tasks import Example as TaskExample
    from cotdistill.common.tasks import render_student_pair

    if sample.completion is not None:
        return sample.prompt or "", sample.completion, sample.teacher is not None
    name = answer_only_partner(fmt) if answer_only else fmt
    example = TaskExample(
        id="", question=sample.question, answer=sample.answer, answer_type="text", dataset=sample.dataset
    )
    prompt, completion = render_student_pair(name, example, sample.rationale)
    return prompt, completion, _uses_rationale(name)


# ---- tokenized examples -------------------------------------------------------------------


@dataclass
class Example:
    """One tokenized student example.

    Decoder-only: ``input_ids`` (L,) prompt+completion, ``labels`` (L,) pre-shifted.
    Encoder-decoder: ``input_ids`` (Le,) the prompt, ``decoder_ids`` (Ld,) the decoder inputs,
    ``labels`` (Ld,) the completion. ``kd_ids``/``kd_logprobs``: (len(labels), k) or None.
    """

    input_ids: np.ndarray
    labels: np.ndarray
    kd_ids: np.ndarray | None = None
    kd_logprobs: np.ndarray | None = None
    decoder_ids: np.ndarray | None = None

    @property
    def length(self) -> int:
        return len(self.input_ids) + (len(self.decoder_ids) if self.decoder_ids is not None else 0)


@dataclass
class BuildStats:
    examples: int = 0
    dropped_too_long: int = 0
    answer_only: int = 0
    kd_tokens: int = 0
    kd_matched_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class ExampleBuilder:
    """Tokenizes samples for one student; attaches aligned KD targets when ``aligner`` is set."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        fmt: str,
        encoder_decoder: bool,
        max_seq_len: int,
        answer_only_fraction: float = 0.0,
        aligner: Aligner | None = None,
        top_k: int = 0,
        seed: int = 0,
        decoder_start_id: int = 0,
    ) -> None:
        self.tok = tokenizer
        self.fmt = fmt
        self.encoder_decoder = encoder_decoder
        self.max_seq_len = max_seq_len
        self.answer_only_fraction = answer_only_fraction
        self.aligner = aligner
        self.top_k = top_k
        self.rng = random.Random(seed)
        self.decoder_start_id = decoder_start_id
        self.stats = BuildStats()
        if fmt not in available_formats():
            raise InvalidArgument("data.format", f"unknown format {fmt!r}; known: {sorted(available_formats())}")

    def _kd(self, completion_ids: np.ndarray, sample: Sample, spells_teacher: bool) -> tuple[np.ndarray, np.ndarray]:
        """(C, k) targets for the completion tokens: aligned teacher top-k or one-hot."""
        k = self.top_k
        if self.aligner is not None and sample.teacher is not None and spells_teacher:
            ids, lps, matched = self.aligner.targets(completion_ids, sample.teacher)
            self.stats.kd_matched_tokens += matched
        else:
            ids = np.zeros((len(completion_ids), k), dtype=np.int64)
            lps = np.full((len(completion_ids), k), ABSENT, dtype=np.float32)
            ids[:, 0], lps[:, 0] = completion_ids, 0.0
        self.stats.kd_tokens += len(completion_ids)
        return ids, lps

    def build(self, samples: Sequence[Sample]) -> list[Example]:
        out: list[Example] = []
        eos = self.tok.eos_token_id
        for sample in samples:
            answer_only = sample.completion is None and self.rng.random() < self.answer_only_fraction
            prompt, completion, spells = render_pair(sample, self.fmt, answer_only)
            self.stats.answer_only += int(answer_only)
            p_ids = np.asarray(self.tok(prompt, add_special_tokens=True)["input_ids"], dtype=np.int64)
            c_ids = np.asarray(self.tok(completion, add_special_tokens=False)["input_ids"], dtype=np.int64)
            if eos is not None:
                c_ids = np.append(c_ids, eos)
            kd = self._kd(c_ids, sample, spells) if self.top_k else None
            if self.encoder_decoder:
                if self.max_seq_len and max(len(p_ids), len(c_ids)) > self.max_seq_len:
                    self.stats.dropped_too_long += 1
                    continue
                dec = np.concatenate([[self.decoder_start_id], c_ids[:-1]]).astype(np.int64)
                out.append(Example(p_ids, c_ids, kd[0] if kd else None, kd[1] if kd else None, dec))
                continue
            ids = np.concatenate([p_ids, c_ids])
            if self.max_seq_len and len(ids) > self.max_seq_len:
                self.stats.dropped_too_long += 1
                continue
            # labels[p] = ids[p+1] for completion tokens: the prediction made at p.
            labels = np.full(len(ids), IGNORE, dtype=np.int64)
            start = len(p_ids) - 1
            labels[start : start + len(c_ids)] = c_ids
            kd_ids = kd_lps = None
            if kd is not None:
                kd_ids = np.zeros((len(ids), self.top_k), dtype=np.int64)
                kd_lps = np.full((len(ids), self.top_k), ABSENT, dtype=np.float32)
                kd_ids[start : start + len(c_ids)], kd_lps[start : start + len(c_ids)] = kd
            out.append(Example(ids, labels, kd_ids, kd_lps))
        self.stats.examples = len(out)
        return out


# ---- micro-batches ------------------------------------------------------------------------


def _pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices grouped into rows whose total length <= capacity."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def _collate_decoder(
    rows: list[list[Example]], width: int, pad_id: int, packed: bool, k: int
) -> dict[str, torch.Tensor]:
    b = len(rows)
    input_ids = np.full((b, width), pad_id, dtype=np.int64)
    labels = np.full((b, width), IGNORE, dtype=np.int64)
    position_ids = np.zeros((b, width), dtype=np.int64)
    attention = np.zeros((b, width), dtype=np.int64)
    kd_ids = np.zeros((b, width, k), dtype=KD_ID_DTYPE) if k else None
    kd_lps = np.full((b, width, k), ABSENT, dtype=KD_LOGPROB_DTYPE) if k else None
    for r, row in enumerate(rows):
        pos = 0
        for ex in row:
            n = len(ex.input_ids)
            input_ids[r, pos : pos + n] = ex.input_ids
            labels[r, pos : pos + n] = ex.labels
            position_ids[r, pos : pos + n] = np.arange(n)
            attention[r, pos : pos + n] = 1
            if kd_ids is not None and kd_lps is not None and ex.kd_ids is not None and ex.kd_logprobs is not None:
                kd_ids[r, pos : pos + n] = ex.kd_ids
                kd_lps[r, pos : pos + n] = ex.kd_logprobs
            pos += n
        # Padding continues as its own short "sequence" so it never attends into real tokens.
        position_ids[r, pos:] = np.arange(width - pos)
    batch: dict[str, torch.Tensor] = {
        "input_ids": torch.from_numpy(input_ids),
        "labels": torch.from_numpy(labels),
        "position_ids": torch.from_numpy(position_ids),
        "num_tokens": torch.tensor(int(attention.sum())),
    }
    if not packed:
        batch["attention_mask"] = torch.from_numpy(attention)
    if kd_ids is not None and kd_lps is not None:
        batch["kd_ids"], batch["kd_logprobs"] = torch.from_numpy(kd_ids), torch.from_numpy(kd_lps)
    return batch


def _collate_seq2seq(examples: list[Example], pad_id: int, k: int) -> dict[str, torch.Tensor]:
    b = len(examples)
    we = max(len(e.input_ids) for e in examples)
    wd = max(len(e.labels) for e in examples)
    enc = np.full((b, we), pad_id, dtype=np.int64)
    enc_mask = np.zeros((b, we), dtype=np.int64)
    dec = np.full((b, wd), pad_id, dtype=np.int64)
    dec_mask = np.zeros((b, wd), dtype=np.int64)
    labels = np.full((b, wd), IGNORE, dtype=np.int64)
    kd_ids = np.zeros((b, wd, k), dtype=KD_ID_DTYPE) if k else None
    kd_lps = np.full((b, wd, k), ABSENT, dtype=KD_LOGPROB_DTYPE) if k else None
    for r, ex in enumerate(examples):
        assert ex.decoder_ids is not None
        enc[r, : len(ex.input_ids)] = ex.input_ids
        enc_mask[r, : len(ex.input_ids)] = 1
        dec[r, : len(ex.decoder_ids)] = ex.decoder_ids
        dec_mask[r, : len(ex.decoder_ids)] = 1
        labels[r, : len(ex.labels)] = ex.labels
        if kd_ids is not None and kd_lps is not None and ex.kd_ids is not None and ex.kd_logprobs is not None:
            kd_ids[r, : len(ex.labels)] = ex.kd_ids
            kd_lps[r, : len(ex.labels)] = ex.kd_logprobs
    batch = {
        "input_ids": torch.from_numpy(enc),
        "attention_mask": torch.from_numpy(enc_mask),
        "decoder_input_ids": torch.from_numpy(dec),
        "decoder_attention_mask": torch.from_numpy(dec_mask),
        "labels": torch.from_numpy(labels),
        "num_tokens": torch.tensor(int(enc_mask.sum() + dec_mask.sum())),
    }
    if kd_ids is not None and kd_lps is not None:
        batch["kd_ids"], batch["kd_logprobs"] = torch.from_numpy(kd_ids), torch.from_numpy(kd_lps)
    return batch


def build_batches(
    examples: Sequence[Example],
    *,
    batch_size: int,
    packing: bool,
    pad_id: int,
    seed: int,
    top_k: int = 0,
    encoder_decoder: bool = False,
    bucket_span: int = 50,
    pack_width: int = 0,
) -> list[dict[str, torch.Tensor]]:
    """Micro-batches of ``batch_size`` examples each (the last may be smaller).

    Packing (decoder-only): the batch's examples go into rows ``pack_width`` tokens wide (0:
    twice the batch's longest example), first-fit decreasing, so a batch of short examples
    becomes a few nearly full rows. Rows stay short because attention cost grows with the
    square of the row width even where the block-diagonal mask hides it.
    Bucketing: examples are shuffled, then sorted by length within spans of ``bucket_span``
    batches, so each batch pads to a similar length.
    """
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    if not packing or encoder_decoder:
        span = batch_size * bucket_span
        order = [
            i for s in range(0, len(order), span) for i in sorted(order[s : s + span], key=lambda i: examples[i].length)
        ]
    groups = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    batches = []
    for group in groups:
        exs = [examples[i] for i in group]
        if encoder_decoder:
            batches.append(_collate_seq2seq(exs, pad_id, top_k))
        elif packing:
            longest = max(len(e.input_ids) for e in exs)
            width = max(longest, pack_width or 2 * longest)
            rows = _pack_rows([len(e.input_ids) for e in exs], width)
            used = max(sum(len(exs[i].input_ids) for i in row) for row in rows)
            batches.append(_collate_decoder([[exs[i] for i in row] for row in rows], used, pad_id, True, top_k))
        else:
            width = max(len(e.input_ids) for e in exs)
            batches.append(_collate_decoder([[e] for e in exs], width, pad_id, False, top_k))
    rng.shuffle(batches)  # bucketing sorted them by length: mix lengths across steps
    return batches


class BatchList(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Pre-built micro-batches as a map-style dataset (use ``DataLoader(batch_size=None)``).

    Map-style so Ray Train's ``prepare_data_loader`` can shard it with a DistributedSampler.
    """

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.batches[index]
