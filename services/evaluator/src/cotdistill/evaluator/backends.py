"""Where answers come from: a checkpoint (transformers), an OpenAI-compatible URL, or the teacher.

Every backend implements :class:`Generator`: ``generate(prompts, params)`` returns, for each
prompt, ``params.num_samples`` completions (text after the prompt, cut at the first stop string).
The evaluation loop never knows which backend it talks to.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import httpx

from cotdistill.common.chat import render_chat
from cotdistill.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from cotdistill.common.lm import choice_seed, cut_at_stop
from cotdistill.common.models import is_registry_name, resolve_model
from cotdistill.common.tasks.teacher_prompts import ChatPrompt
from cotdistill.evaluator.suite import Prompt
from cotdistill.v1 import common_pb2

_STEP_DIR = re.compile(r"(?:^|[-_])step[-_]?(\d+)$")


@dataclass(frozen=True)
class GenerationParams:
    """Generation settings after defaults and range checks.

    ``temperature == 0`` is greedy decoding; ``num_samples`` completions are drawn per prompt
    (they are all equal under greedy decoding, so greedy always uses 1).
    """

    max_tokens: int = 128
    temperature: float = 0.0
    num_samples: int = 1
    seed: int | None = None
    batch_size: int = 32
    stop: tuple[str, ...] = field(default_factory=tuple)

    def cache_key(self) -> dict[str, Any]:
        """The parameters that change results (batch size does not, for a deterministic model)."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "num_samples": self.num_samples,
            "seed": self.seed,
            "stop": list(self.stop),
        }


class Generator(Protocol):
    """A model that completes prompts."""

    kind: str
    description: str

    async def open(self) -> None:
        """Load or connect; raises Unavailable when the model cannot be reached."""

    def content_hash(self) -> str:
        """Hex digest identifying the model's behaviour (weights + tokenizer, or URL + name)."""

    def num_parameters(self) -> int:
        """Parameter count, 0 when unknown."""

    def step(self) -> int:
        """Training step inferred from where the model lives, 0 when unknown."""

    async def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[str]]:
        """``[len(prompts)][params.num_samples]`` completions."""

    async def close(self) -> None:
        """Release memory and connections."""


# Training state kept beside the weights; it does not change what the model generates, so a
# checkpoint re-saved with another loss record or optimizer state keeps its cached results.
TRAINING_STATE = re.compile(
    r"^(optimizer.*|scheduler.*|rng_state.*|trainer_state\.json|run_state\.json|state\.json|metrics\.json"
    r"|training_args\.bin)$"
)


def hash_directory(path: Path) -> str:
    """SHA-256 over the relative names and bytes of the model files under ``path``.

    Every regular file counts (weights, config, tokenizer) except training state
    (:data:`TRAINING_STATE`) and hidden files. Files are read in 1 MiB chunks, so large
    checkpoints hash without loading into memory.
    """
    digest = hashlib.sha256()
    files = [
        p for p in path.rglob("*") if p.is_file() and not TRAINING_STATE.match(p.name) and not p.name.startswith(".")
    ]
    for file in sorted(files):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def check_checkpoint_dir(path: str | Path, field: str) -> None:
    """A model directory or a typed error naming ``field``: NOT_FOUND when nothing is there,
    INVALID_ARGUMENT when it is not a model directory (no ``config.json``)."""
    path = Path(path)
    if not path.exists():
        raise NotFound(f"{field}: no such directory on the evaluator: {path}")
    if not path.is_dir():
        raise InvalidArgument(field, f"{path} is not a directory")
    if not (path / "config.json").is_file():
        raise InvalidArgument(field, f"{path} is not a model directory (no config.json)")


class TransformersGenerator:
    """A local checkpoint decoded exactly as the model server serves it (``cotdistill.common.lm``:
    the same EOS set, sampling step, per-choice seeds, stop cutting and text decoding), one static
    left-padded batch per call, so a checkpoint scores what the server would answer."""

    kind = "checkpoint"

    def __init__(self, path: str, *, device: str = "cpu", torch_threads: int = 0, field: str = "model") -> None:
        self.path = Path(path)
        self.field = f"{field}.checkpoint_path"
        self.description = f"checkpoint {path}"
        self.device = device
        self.torch_threads = torch_threads
        self._lm: Any = None
        self._tokenizer: Any = None
        self._hash = ""
        self._params = 0
        # transformers models are not safe to call from two threads at once.
        self._lock = threading.Lock()

    async def open(self) -> None:
        if is_registry_name(str(self.path)):  # e.g. the untrained student, by its registry name
            self.path = await asyncio.to_thread(resolve_model, str(self.path))
        check_checkpoint_dir(self.path, self.field)
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        import torch

        from cotdistill.common.lm.loading import load_lm

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        try:
            # float32 as the model server loads by default (its COTDISTILL_SERVER_DTYPE).
            lm = load_lm(self.path, dtype="float32", device=self.device)
        except (OSError, ValueError) as err:
            # A model directory that does not load is the request's problem, not an outage: a
            # retry (what clients do on UNAVAILABLE) cannot help.
            raise FailedPrecondition(self.field, f"cannot load {self.path}: {err}") from err
        self._lm, self._tokenizer = lm, lm.tokenizer
        self._params = sum(p.numel() for p in lm.model.parameters())
        self._hash = hash_directory(self.path)

    def content_hash(self) -> str:
        return self._hash

    def num_parameters(self) -> int:
        return self._params

    def step(self) -> int:
        match = _STEP_DIR.search(self.path.name)
        return int(match.group(1)) if match else 0

    async def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[str]]:
        return await asyncio.to_thread(self._generate, list(prompts), params)

    def _texts(self, prompts: list[Prompt]) -> tuple[list[str], bool]:
        """Prompt texts, and whether they came through the chat template (which writes its own
        special tokens, so none are added on top, as vLLM does)."""
        if not any(isinstance(p, ChatPrompt) for p in prompts):
            return [p for p in prompts if isinstance(p, str)], False
        texts = []
        for p in prompts:
            chat = p if isinstance(p, ChatPrompt) else ChatPrompt((("user", p),))
            text = render_chat(self._tokenizer, chat.as_dicts(), chat.prefix)
            if text is None:
                raise InvalidArgument("formats", f"chat_* formats need a chat template; {self.path} has none")
            texts.append(text)
        return texts, True

    def _generate(self, prompts: list[Prompt], params: GenerationParams) -> list[list[str]]:
        import torch

        from cotdistill.common.lm.decode import generate

        if self.torch_threads:
            # OpenMP thread counts are per calling thread, and generation runs on a worker thread.
            torch.set_num_threads(self.torch_threads)
        k = params.num_samples
        with self._lock, torch.inference_mode():
            texts, templated = self._texts(prompts)
            encoded = self._tokenizer(texts, add_special_tokens=not templated)["input_ids"]
            eos = self._lm.eos_token_id
            # An empty prompt starts from a document boundary, as the model server starts it.
            ids = [list(x) if len(x) or eos is None else [eos] for x in encoded]
            # Sample j of a prompt is choice j of a server request with n = num_samples.
            decoded = generate(
                self._lm,
                [p for p in ids for _ in range(k)],
                max_tokens=params.max_tokens,
                temperature=params.temperature,
                stop=params.stop,
                seeds=[choice_seed(params.seed, j) for _ in ids for j in range(k)],
            )
        out = [d.text for d in decoded]
        return [out[i * k : (i + 1) * k] for i in range(len(prompts))]

    async def close(self) -> None:
        self._lm = None
        self._tokenizer = None


class OpenAIGenerator:
    """An OpenAI-compatible ``/v1/completions`` endpoint (the model server, vLLM, a hosted API).

    One request per prompt (``n`` = samples), ``batch_size`` requests in flight: every
    compatible server accepts that, and servers with dynamic batching batch them themselves.
    """

    kind = "openai"

    def __init__(self, endpoint: common_pb2.OpenAIEndpoint, *, timeout_s: float = 300.0) -> None:
        if not endpoint.base_url.startswith(("http://", "https://")):
            raise InvalidArgument("model.openai.base_url", f"{endpoint.base_url!r} is not an http(s) URL")
        if not endpoint.model:
            raise InvalidArgument("model.openai.model", "must name the model to request")
        headers = {}
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env)
            if not key:
                raise InvalidArgument(
                    "model.openai.api_key_env", f"{endpoint.api_key_env} is not set in the evaluator's environment"
                )
            headers["Authorization"] = f"Bearer {key}"
        self.base_url = endpoint.base_url.rstrip("/")
        self.model = endpoint.model
        self.description = f"{self.model} at {self.base_url}"
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)

    async def open(self) -> None:
        try:
            reply = await self._client.get("/models", timeout=10.0)
        except httpx.HTTPError as err:
            raise Unavailable(f"model.openai.base_url: cannot reach {self.base_url}: {err}") from err
        if reply.status_code in (401, 403):
            raise Unavailable(f"model.openai: {self.base_url} refused the credentials ({reply.status_code})")

    def content_hash(self) -> str:
        return hashlib.sha256(f"openai\0{self.base_url}\0{self.model}".encode()).hexdigest()

    def num_parameters(self) -> int:
        return 0

    def step(self) -> int:
        return 0

    async def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[str]]:
        if any(isinstance(p, ChatPrompt) for p in prompts):
            # /v1/completions takes text, and this backend has no tokenizer to render a template with.
            raise InvalidArgument("formats", "chat_* formats are not supported for an OpenAI-compatible model")
        limit = asyncio.Semaphore(params.batch_size)

        async def one(prompt: Prompt) -> list[str]:
            body: dict[str, Any] = {
                "model": self.model,
                "prompt": prompt,
                "max_tokens": params.max_tokens,
                "temperature": params.temperature,
                "n": params.num_samples,
            }
            if params.stop:
                body["stop"] = list(params.stop)
            if params.seed is not None:
                body["seed"] = params.seed
            async with limit:
                try:
                    reply = await self._client.post("/completions", json=body)
                except httpx.HTTPError as err:
                    raise Unavailable(f"model.openai.base_url: {self.base_url}: {err}") from err
            if reply.status_code >= 500 or reply.status_code == 429:
                raise Unavailable(f"model.openai: {self.base_url} answered {reply.status_code}: {reply.text[:200]}")
            if reply.status_code >= 400:
                raise InvalidArgument(
                    "model.openai", f"{self.base_url} answered {reply.status_code}: {reply.text[:200]}"
                )
            choices = sorted(reply.json().get("choices", []), key=lambda c: c.get("index", 0))
            texts = [cut_at_stop(str(c.get("text", "")), params.stop) for c in choices]
            if len(texts) != params.num_samples:
                raise Unavailable(
                    f"model.openai: {self.base_url} returned {len(texts)} choices for n={params.num_samples}"
                )
            return texts

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    async def close(self) -> None:
        await self._client.aclose()


class TeacherGenerator:
    """The teacher service (gRPC ``Sample``), e.g. to plot teacher vs student accuracy."""

    kind = "teacher"

    def __init__(self, address: str, *, timeout_s: float = 600.0) -> None:
        if ":" not in address:
            raise InvalidArgument("model.teacher_address", f"{address!r} is not host:port")
        self.address = address
        self.description = f"teacher at {address}"
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._hash = ""

    async def open(self) -> None:
        from cotdistill.common.grpc_client import open_channel, wait_for_ready
        from cotdistill.v1 import teacher_pb2, teacher_pb2_grpc

        self._channel = open_channel(self.address, round_robin=False)
        self._stub = teacher_pb2_grpc.TeacherServiceStub(self._channel)
        try:
            await wait_for_ready(self._channel, timeout_s=10.0)
            info = await self._stub.Info(teacher_pb2.InfoRequest(), timeout=30.0)
        except (TimeoutError, grpc.aio.AioRpcError) as err:
            raise Unavailable(f"model.teacher_address: teacher at {self.address} is not reachable: {err}") from err
        self.description = f"teacher {info.model_id} at {self.address}"
        self._hash = hashlib.sha256(f"teacher\0{info.model_id}\0{info.tokenizer.content_hash}".encode()).hexdigest()

    def content_hash(self) -> str:
        return self._hash

    def num_parameters(self) -> int:
        return 0

    def step(self) -> int:
        return 0

    async def generate(self, prompts: Sequence[Prompt], params: GenerationParams) -> list[list[str]]:
        from cotdistill.v1 import teacher_pb2

        k = params.num_samples
        request = teacher_pb2.SampleRequest(
            prompts=[_teacher_prompt(i, p) for i, p in enumerate(prompts)],
            params=teacher_pb2.SamplingParams(
                n=k,
                temperature=params.temperature,
                max_tokens=params.max_tokens,
                stop=list(params.stop),
                seed=params.seed,
            ),
        )
        out: list[list[str]] = [[""] * k for _ in prompts]
        try:
            async for reply in self._stub.Sample(request, timeout=self.timeout_s):
                out[reply.prompt_index][reply.sample_index] = cut_at_stop(reply.text, params.stop)
        except grpc.aio.AioRpcError as err:
            if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"model.teacher_address: {self.address}: {err.details()}") from err
            raise
        return out

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)


def generator_for(
    model: common_pb2.ModelRef, *, device: str = "cpu", torch_threads: int = 0, field: str = "model"
) -> Generator:
    """The backend for a request's ``model`` field (named ``field`` in errors); INVALID_ARGUMENT
    when none is set. A checkpoint path must already be confined to the service's roots."""
    which = model.WhichOneof("source")
    if which == "checkpoint_path":
        if not model.checkpoint_path:
            raise InvalidArgument(f"{field}.checkpoint_path", "must not be empty")
        return TransformersGenerator(model.checkpoint_path, device=device, torch_threads=torch_threads, field=field)
    if which == "openai":
        return OpenAIGenerator(model.openai)
    if which == "teacher_address":
        return TeacherGenerator(model.teacher_address)
    raise InvalidArgument(field, "set one of checkpoint_path, openai, teacher_address")


def _teacher_prompt(index: int, prompt: Prompt) -> Any:
    """A teacher ``Prompt``: text, or a conversation the teacher renders with its chat template."""
    from cotdistill.v1 import teacher_pb2

    if isinstance(prompt, str):
        return teacher_pb2.Prompt(id=str(index), text=prompt)
    chat = teacher_pb2.ChatPrompt(
        messages=[teacher_pb2.ChatMessage(role=r, content=c) for r, c in prompt.messages],
        assistant_prefix=prompt.prefix,
    )
    return teacher_pb2.Prompt(id=str(index), chat=chat)
