"""OpenAI-compatible HTTP backend: a remote vLLM/TGI server or a hosted API via ``/v1/completions``.

One HTTP call per prompt asks for ``n`` samples with ``logprobs=k`` (OpenAI allows up to 20 with
vLLM servers; hosted APIs often cap it lower: set ``COTDISTILL_TEACHER_MAX_TOP_K``). Calls are
bounded by a concurrency limit and an optional rate limit, and retried with exponential backoff on
429, 5xx and connection errors (``Retry-After`` is honoured).

The API returns tokens as strings. They are mapped to the teacher's token ids either with the
tokenizer given in ``COTDISTILL_TEACHER_TOKENIZER`` (each id's decoded string; a string that several
ids decode to, such as a partial UTF-8 byte, is ambiguous: such a candidate is dropped and such a
sampled token takes the lowest matching id),
or, with ``COTDISTILL_TEACHER_OPENAI_TOKEN_IDS=true`` against a vLLM server, exactly via vLLM's
``return_tokens_as_token_ids`` extension (``"token_id:N"``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from cotdistill.common.errors import ConfigError, InvalidArgument, Unavailable
from cotdistill.common.models import resolve_model
from cotdistill.teacher.engine import (
    Backend,
    Completion,
    EngineInfo,
    FinishReason,
    GenerateRequest,
    LogprobMode,
    ScoreInput,
    ScoreOutput,
    TokenScores,
)
from cotdistill.teacher.engines.topk import CandidateColumns, normalize
from cotdistill.teacher.engines.transformers_engine import row_seed
from cotdistill.teacher.tokenizer_info import describe_tokenizer, render_chat

if TYPE_CHECKING:
    from cotdistill.teacher.settings import TeacherSettings

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_TOKEN_ID_PREFIX = "token_id:"


class RateLimiter:
    """At most ``rate`` calls per second (token bucket with a burst of one); 0 disables it."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            await asyncio.sleep(wait)


class TokenMapper:
    """Token strings from the API -> ids of the teacher's tokenizer."""

    def __init__(self, tokenizer: Any | None, token_ids_param: bool) -> None:
        self.token_ids_param = token_ids_param
        self._by_text: dict[str, int] = {}
        self._lowest: dict[str, int] = {}  # also ambiguous strings: the lowest id decoding to them
        if tokenizer is not None and not token_ids_param:
            ambiguous: set[str] = set()
            for token_id in range(len(tokenizer)):
                text = tokenizer.decode([token_id])
                if text in self._lowest:
                    ambiguous.add(text)
                else:
                    self._lowest[text] = token_id
            self._by_text = {t: i for t, i in self._lowest.items() if t not in ambiguous}
            log.info("token mapper: %d unique token strings, %d ambiguous", len(self._by_text), len(ambiguous))

    def to_id(self, token: str) -> int | None:
        if token.startswith(_TOKEN_ID_PREFIX):
            try:
                return int(token[len(_TOKEN_ID_PREFIX) :])
            except ValueError:
                return None
        return self._by_text.get(token)

    def sampled_id(self, token: str) -> int | None:
        """Like :meth:`to_id`, but an ambiguous string (partial UTF-8 bytes decode alike) maps to the
        lowest id that decodes to it, so every generated position keeps a token id."""
        found = self.to_id(token)
        return found if found is not None else self._lowest.get(token)


class OpenAIEngine:
    """Teacher engine over an OpenAI-compatible ``/v1/completions`` endpoint."""

    backend: Backend = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer_path: str = "",
        api_key: str | None = None,
        token_ids_param: bool = False,
        max_top_k: int = 20,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        timeout_s: float = 600.0,
        rate_limit_rps: float = 0.0,
        concurrency: int = 16,
        logprob_mode: LogprobMode = "raw",
        context_length: int = 0,
    ) -> None:
        if not tokenizer_path and not token_ids_param:
            raise ConfigError(
                "the openai backend needs COTDISTILL_TEACHER_TOKENIZER (to map token strings to ids) or "
                "COTDISTILL_TEACHER_OPENAI_TOKEN_IDS=true (vLLM servers return ids directly)",
                key="COTDISTILL_TEACHER_TOKENIZER",
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer_path = tokenizer_path
        self.api_key = api_key
        self.token_ids_param = token_ids_param
        self.max_top_k = max_top_k
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.logprob_mode: LogprobMode = logprob_mode
        self._context_length = context_length
        self._limiter = RateLimiter(rate_limit_rps)
        self._slots = asyncio.Semaphore(concurrency)
        self._client: httpx.AsyncClient | None = None
        self._tasks: dict[str, set[asyncio.Task[Any]]] = {}
        self._waiting = 0
        self.tokenizer: Any = None
        self.mapper: TokenMapper | None = None
        self._info: EngineInfo | None = None
        self.retries = 0  # retried HTTP calls (tests and logs)

    @classmethod
    def from_settings(cls, settings: TeacherSettings) -> OpenAIEngine:
        key = None
        if settings.openai_api_key_env:
            key = os.environ.get(settings.openai_api_key_env)
            if not key:
                raise ConfigError(
                    f"the environment variable {settings.openai_api_key_env} is empty",
                    key=settings.env_name("openai_api_key_env"),
                )
        return cls(
            settings.openai_base_url,
            settings.model,
            tokenizer_path=settings.tokenizer,
            api_key=key,
            token_ids_param=settings.openai_token_ids,
            max_top_k=settings.max_top_k,
            max_retries=settings.openai_max_retries,
            backoff_s=settings.openai_backoff_s,
            timeout_s=settings.openai_timeout_s,
            rate_limit_rps=settings.openai_rate_limit_rps,
            concurrency=settings.openai_concurrency,
            logprob_mode=settings.openai_logprob_mode,
            context_length=settings.openai_context_length,
        )

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout_s)
        models = await self._call("GET", "/models")
        card = next((m for m in models.get("data", []) if m.get("id") == self.model), None)
        if card is None:
            known = ", ".join(str(m.get("id")) for m in models.get("data", []))
            raise ConfigError(f"{self.base_url} serves no model {self.model!r} (it serves: {known})", key="model")
        context = self._context_length or int(card.get("max_model_len") or 0)
        if not context:
            raise ConfigError(
                "the server does not report max_model_len; set it", key="COTDISTILL_TEACHER_OPENAI_CONTEXT_LENGTH"
            )
        description = None
        if self.tokenizer_path:
            from transformers import AutoTokenizer

            where = await asyncio.to_thread(resolve_model, self.tokenizer_path, need_weights=False)
            self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, str(where))
            description = describe_tokenizer(self.tokenizer, self.tokenizer_path, len(self.tokenizer))
        self.mapper = await asyncio.to_thread(TokenMapper, self.tokenizer, self.token_ids_param)
        self._info = EngineInfo(
            model_id=self.model,
            backend="openai",
            tokenizer=description,
            context_length=context,
            max_top_k=self.max_top_k,
            logprob_modes=(self.logprob_mode,),
            supports_score=self.tokenizer is not None,
            extra={"base_url": self.base_url},
        )

    async def close(self) -> None:
        for tasks in list(self._tasks.values()):
            for task in tasks:
                task.cancel()
        if self._client is not None:
            await self._client.aclose()

    def info(self) -> EngineInfo:
        if self._info is None:
            raise RuntimeError("engine not started")
        return self._info

    async def check_health(self) -> None:
        await self._call("GET", "/models")

    def queue_depth(self) -> int:
        """HTTP calls waiting for a concurrency slot or the rate limiter."""
        return self._waiting

    def active_requests(self) -> int:
        return len(self._tasks)

    def render_chat(self, messages: Sequence[Mapping[str, str]], assistant_prefix: str) -> str | None:
        return render_chat(self.tokenizer, messages, assistant_prefix)

    def encode(self, texts: Sequence[str], *, special_tokens: bool = True) -> list[list[int]] | None:
        if self.tokenizer is None:
            return None
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=special_tokens)["input_ids"]]

    # ---- HTTP with retries ---------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call with bounded concurrency, rate limit and retries; returns the JSON body."""
        assert self._client is not None
        attempt = 0
        while True:
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            try:
                await self._limiter.acquire()
                try:
                    response = await self._client.request(method, path, json=body)
                except httpx.TransportError as exc:  # connection refused/reset, timeouts
                    error: str = f"{type(exc).__name__}: {exc}"
                    retry_after = None
                else:
                    if response.status_code < 400:
                        return dict(response.json())
                    if response.status_code not in RETRY_STATUS:
                        raise _client_error(response)
                    error = f"HTTP {response.status_code}: {response.text[:200]}"
                    retry_after = _retry_after(response)
            finally:
                self._slots.release()
            if attempt >= self.max_retries:
                raise Unavailable(f"{self.base_url}{path} failed after {attempt + 1} attempts: {error}")
            delay = retry_after if retry_after is not None else self.backoff_s * (2**attempt)
            delay *= 1 + 0.1 * random.random()  # jitter: replicas retrying together do not stay in step
            attempt += 1
            self.retries += 1
            log.warning("%s %s: %s; retry %d/%d in %.2f s", method, path, error, attempt, self.max_retries, delay)
            await asyncio.sleep(delay)

    # ---- generate --------------------------------------------------------------------------

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Completion]:
        opts = request.options
        context = self.info().context_length
        out: asyncio.Queue[list[Completion] | BaseException] = asyncio.Queue()
        first = [False]

        async def one(p: int) -> None:
            ids = request.prompt_ids[p]
            max_tokens = opts.max_tokens if ids is None else max(1, min(opts.max_tokens, context - len(ids)))
            body: dict[str, Any] = {
                "model": self.model,
                "prompt": request.prompts[p],
                "n": opts.n,
                "temperature": opts.temperature,
                "top_p": opts.top_p,
                "max_tokens": max_tokens,
                "logprobs": opts.top_k_logprobs,
            }
            if opts.stop:
                body["stop"] = list(opts.stop)
            if opts.seed is not None:
                body["seed"] = row_seed(opts.seed, p, 0) % (2**31)
            if self.token_ids_param:
                body["return_tokens_as_token_ids"] = True
            try:
                reply = await self._call("POST", "/completions", body)
                if not first[0]:
                    first[0] = True
                    if request.on_first_token is not None:
                        request.on_first_token()
                prompt_tokens = int(reply.get("usage", {}).get("prompt_tokens", 0)) or (len(ids) if ids else 0)
                out.put_nowait([self._completion(choice, p, prompt_tokens, opts) for choice in reply["choices"]])
            except InvalidArgument as exc:
                out.put_nowait(InvalidArgument(f"prompts[{p}]", str(exc)))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                out.put_nowait(exc)

        tasks = {asyncio.ensure_future(one(p)) for p in range(len(request.prompts))}
        self._tasks[request.request_id] = tasks
        remaining = len(tasks)
        try:
            while remaining:
                item = await out.get()
                if isinstance(item, BaseException):
                    raise item
                remaining -= 1
                for completion in item:
                    yield completion
        finally:
            await self.abort(request.request_id)

    def _completion(self, choice: dict[str, Any], p: int, prompt_tokens: int, opts: Any) -> Completion:
        k = opts.top_k_logprobs
        logprobs = choice.get("logprobs") or {}
        tokens: list[str] = logprobs.get("tokens") or []
        token_ids = self._ids(tokens, f"choices[{choice.get('index', 0)}].logprobs.tokens")
        columns = CandidateColumns()
        tops = logprobs.get("top_logprobs") or [None] * len(tokens)
        sampled_lps = logprobs.get("token_logprobs") or [None] * len(tokens)
        assert self.mapper is not None
        for token_id, sampled_lp, top in zip(token_ids, sampled_lps, tops, strict=True):
            entries: dict[int, float] = {}
            if sampled_lp is not None:
                entries[token_id] = float(sampled_lp)
            for text, lp in (top or {}).items():
                mapped = self.mapper.to_id(text)
                if mapped is not None:
                    entries.setdefault(mapped, float(lp))
            columns.extend_dicts([entries])
        token_lp, top_ids, top_lps = normalize(columns, token_ids, k, sampled_first=False)
        reason: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
        scores = TokenScores(token_ids, token_lp, k, top_ids, top_lps, self.logprob_mode)
        return Completion(p, int(choice.get("index", 0)), str(choice.get("text", "")), scores, reason, prompt_tokens)

    def _ids(self, tokens: Sequence[str], field: str) -> list[int]:
        assert self.mapper is not None
        ids = [self.mapper.sampled_id(t) for t in tokens]
        if any(i is None for i in ids):
            raise Unavailable(f"{field}: the server returned token strings this tokenizer cannot map to ids")
        return [int(i) for i in ids if i is not None]

    async def abort(self, request_id: str) -> None:
        tasks = self._tasks.pop(request_id, set())
        for task in tasks:
            task.cancel()  # closes the HTTP call; vLLM servers abort a request whose client left
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---- score -----------------------------------------------------------------------------

    async def score(self, items: Sequence[ScoreInput], top_k: int) -> list[ScoreOutput]:
        """Prompt logprobs via ``echo`` on token-id prompts (vLLM servers; needs the tokenizer)."""
        if self.tokenizer is None:
            raise InvalidArgument("items", "Score over the openai backend needs COTDISTILL_TEACHER_TOKENIZER")
        bos = self.tokenizer.bos_token_id

        async def one(item: ScoreInput) -> ScoreOutput:
            p = list(item.prompt_ids if item.prompt_ids is not None else self.tokenizer.encode(item.prompt))
            c = list(
                item.completion_ids
                if item.completion_ids is not None
                else self.tokenizer.encode(item.completion, add_special_tokens=False)
            )
            if not p:
                p = [bos]
            body: dict[str, Any] = {
                "model": self.model,
                "prompt": p + c,
                "max_tokens": 1,
                "echo": True,
                "logprobs": top_k,
                "temperature": 1.0,
            }
            if self.token_ids_param:
                body["return_tokens_as_token_ids"] = True
            reply = await self._call("POST", "/completions", body)
            logprobs = reply["choices"][0]["logprobs"]
            lo, hi = len(p), len(p) + len(c)
            columns = CandidateColumns()
            assert self.mapper is not None
            for token_id, sampled_lp, top in zip(
                c, logprobs["token_logprobs"][lo:hi], logprobs["top_logprobs"][lo:hi], strict=True
            ):
                entries: dict[int, float] = {}
                if sampled_lp is not None:
                    entries[token_id] = float(sampled_lp)
                for text, lp in (top or {}).items():
                    mapped = self.mapper.to_id(text)
                    if mapped is not None:
                        entries.setdefault(mapped, float(lp))
                columns.extend_dicts([entries])
            token_lp, top_ids, top_lps = normalize(columns, c, top_k, sampled_first=False)
            return ScoreOutput(TokenScores(c, token_lp, top_k, top_ids, top_lps, "raw"), len(p))

        return list(await asyncio.gather(*(one(item) for item in items)))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _client_error(response: httpx.Response) -> Exception:
    """4xx other than 408/429: the request itself is wrong; pass the server's reason on."""
    try:
        payload = response.json()
        message = payload.get("error", {}).get("message") if isinstance(payload.get("error"), dict) else None
        message = message or payload.get("message") or response.text
    except ValueError:
        message = response.text
    if response.status_code in (400, 413, 422):
        return InvalidArgument("request", f"the server rejected it (HTTP {response.status_code}): {message}"[:1000])
    return Unavailable(f"HTTP {response.status_code} from the server: {message}"[:1000])
