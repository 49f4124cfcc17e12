"""OpenAI-compatible HTTP backend: a remote vLLM/TGI server or a hosted API via ``/v1/completions``.

One HTTP call per prompt asks for ``n`` samples with ``logprobs=k`` (OpenAI allows up to 20 with
vLLM servers; hosted APIs often cap it lower: set ``COTDISTILL_TEACHER_MAX_TOP_K``). Calls are
bounded by a concurrency limit and an optional rate limit, and retried with exponential backoff on
429, 5xx and connection errors (``Retry-After`` is honoured).

The API returns tokens as strings. They are mapped to the teacher's token ids either with the
tokenizer given in ``COTDISTILL_TEACHER_TOKENIZER`` (each id's decoded string; a string that several
ids decode to, such as a partial UTF-8 byte, is ambiguous: such a candidate is dropped and such a
sampled token takes the lowest matching id),
or exactly via vLLM's ``return_tokens_as_token_ids`` extension (``"token_id:N"``): set
``COTDISTILL_TEACHER_OPENAI_TOKEN_IDS=true``, or leave the start-up probe on
(``COTDISTILL_TEACHER_OPENAI_PROBE_TOKEN_IDS``, default true), which uses ids whenever the server
returns them (vLLM's and cotdistill's servers do).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from cotdistill.common.errors import ConfigError, InvalidArgument, Unavailable
from cotdistill.common.lm.loading import load_tokenizer
from cotdistill.common.models import resolve_model
from cotdistill.common.token_strings import token_strings
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
_BYTES_PREFIX = "bytes:"


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
    """Token strings from the API -> ids of the teacher's tokenizer.

    OpenAI-style servers (OpenAI, vLLM, ours) write a token as the text it adds, a token holding
    part of a UTF-8 character as ``bytes:\\xe2\\x80``, and the token completing that character as
    the whole character. Ids therefore come from each token's own bytes (the vocabulary piece),
    read in sequence so a completing token gives back the bytes its predecessors already sent;
    strings that no byte sequence explains fall back to decoded-string matching.
    """

    def __init__(self, tokenizer: Any | None, token_ids_param: bool) -> None:
        self.token_ids_param = token_ids_param
        self._by_text: dict[str, int] = {}
        self._lowest: dict[str, int] = {}  # also ambiguous strings: the lowest id decoding to them
        self._by_bytes: dict[bytes, int] = {}  # a token's own bytes -> the lowest id with them
        self._raw: dict[int, bytes] = {}
        if tokenizer is not None and not token_ids_param:
            strings = token_strings(tokenizer)
            ambiguous: set[str] = set()
            for token_id in range(len(tokenizer)):
                text = tokenizer.decode([token_id])
                if text in self._lowest:
                    ambiguous.add(text)
                else:
                    self._lowest[text] = token_id
                if not strings.is_special(token_id):
                    self._raw[token_id] = strings.raw_bytes(token_id)
                    self._by_bytes.setdefault(self._raw[token_id], token_id)
            self._by_text = {t: i for t, i in self._lowest.items() if t not in ambiguous}
            log.info("token mapper: %d unique token strings, %d ambiguous", len(self._by_text), len(ambiguous))
        self._single_bytes = sorted(i for raw, i in self._by_bytes.items() if len(raw) == 1)

    def to_id(self, token: str) -> int | None:
        """The id of one token string out of context (a top-logprob candidate); None if ambiguous."""
        if token.startswith(_TOKEN_ID_PREFIX):
            try:
                return int(token[len(_TOKEN_ID_PREFIX) :])
            except ValueError:
                return None
        if token.startswith(_BYTES_PREFIX):
            raw = _label_bytes(token)
            return None if raw is None else self._by_bytes.get(raw)
        found = self._by_text.get(token)
        return found if found is not None else self._by_bytes.get(token.encode("utf-8"))

    def sampled_id(self, token: str) -> int | None:
        """Like :meth:`to_id`, but an ambiguous string (partial UTF-8 bytes decode alike) maps to the
        lowest id that decodes to it, so every generated position keeps a token id."""
        found = self.to_id(token)
        return found if found is not None else self._lowest.get(token)

    def sampled_ids(self, tokens: Sequence[str]) -> list[int | None]:
        """Ids of a generated sequence's token strings, read in order (see the class docstring).

        An incremental UTF-8 decoder replays the chosen ids' bytes, so a candidate is kept only if
        it gives back exactly the string the server wrote (U+FFFD where bytes were invalid).
        """
        exact = self._segment(tokens)
        if exact is not None:
            return list(exact)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        out: list[int | None] = []
        for token in tokens:
            if token.startswith(_TOKEN_ID_PREFIX):
                out.append(self.to_id(token))
                continue
            if token.startswith(_BYTES_PREFIX) and (raw := _label_bytes(token)) is not None:
                found = self._by_bytes.get(raw)
                decoder.decode(raw)
                out.append(found if found is not None else self._lowest.get("\ufffd"))
                continue
            pending = decoder.getstate()[0]
            data = token.encode("utf-8")
            candidates: list[int | None] = []
            if pending and data.startswith(pending):
                candidates.append(self._by_bytes.get(data[len(pending) :]))
            if token.lstrip("\ufffd"):
                candidates.append(self._by_bytes.get(token.lstrip("\ufffd").encode("utf-8")))
            candidates += [self._by_bytes.get(data), self.sampled_id(token)]
            found = next((c for c in candidates if c is not None and self._replays(decoder, c, token)), None)
            if found is None and "\ufffd" in token:  # invalid bytes: the lowest single byte that replays
                found = next((c for c in self._single_bytes if self._replays(decoder, c, token)), None)
            if found is None:
                found = next((c for c in candidates if c is not None), None)
            if found is not None:
                decoder.decode(self._raw.get(found, b""))
            out.append(found)
        return out

    def _segment(self, tokens: Sequence[str]) -> list[int] | None:
        """Ids for a sequence whose text is valid UTF-8: split the text's bytes into vocabulary
        pieces, one per token string. A token's piece starts where the previous one ended and may
        carry the first bytes of a character a later token completes (`` \\xf0\\x9f`` written as
        ``" "``); a ``bytes:`` label fixes its piece exactly. Depth-first, at most 4 extra bytes."""
        labels = [_label_bytes(t) if t.startswith(_BYTES_PREFIX) else None for t in tokens]
        if any(t.startswith(_BYTES_PREFIX) and raw is None for t, raw in zip(tokens, labels, strict=True)):
            return None
        text = "".join(t for t, raw in zip(tokens, labels, strict=True) if raw is None)
        if "\ufffd" in text or any(t.startswith(_TOKEN_ID_PREFIX) for t in tokens):
            return None
        data = text.encode("utf-8")
        # where each token's text ends in the byte stream (labels add no text)
        ends, at = [], 0
        for t, raw in zip(tokens, labels, strict=True):
            at += 0 if raw is not None else len(t.encode("utf-8"))
            ends.append(at)

        def options(i: int, cursor: int) -> list[tuple[int, int]]:
            """(id, next cursor) for token i's piece starting at ``cursor``."""
            raw = labels[i]
            if raw is not None:
                pieces = [raw] if data.startswith(raw, cursor) else []
            else:  # up to this token's text end, plus partial bytes of the next character
                lo = ends[i] - cursor
                pieces = [data[cursor : cursor + n] for n in range(max(lo, 1), lo + 4) if cursor + n <= len(data)]
            return [(self._by_bytes[p], cursor + len(p)) for p in pieces if p in self._by_bytes]

        # depth-first over an explicit stack (sequences are longer than Python's recursion limit)
        stack = [options(0, 0)] if tokens else []
        chosen: list[tuple[int, int]] = []
        while stack:
            if not stack[-1]:
                stack.pop()
                if chosen:
                    chosen.pop()
                continue
            token_id, cursor = stack[-1].pop(0)
            chosen.append((token_id, cursor))
            if len(chosen) == len(tokens):
                if cursor == len(data):
                    return [t for t, _ in chosen]
                chosen.pop()
                continue
            stack.append(options(len(chosen), cursor))
        return [] if not tokens else None

    def _replays(self, decoder: codecs.IncrementalDecoder, token_id: int, token: str) -> bool:
        if token_id not in self._raw:
            return False
        state = decoder.getstate()
        try:
            return decoder.decode(self._raw[token_id]) == token
        finally:
            decoder.setstate(state)


def _label_bytes(label: str) -> bytes | None:
    """``bytes:\\xe2\\x80`` -> the bytes (None if malformed)."""
    body = label[len(_BYTES_PREFIX) :]
    try:
        return bytes(int(part, 16) for part in body.split("\\x")[1:]) if body.startswith("\\x") else None
    except ValueError:
        return None


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
        probe_token_ids: bool = False,
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
        self.probe_token_ids = probe_token_ids
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
            probe_token_ids=settings.openai_probe_token_ids,
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
            where = await asyncio.to_thread(resolve_model, self.tokenizer_path, need_weights=False)
            self.tokenizer = await asyncio.to_thread(load_tokenizer, str(where))
            description = describe_tokenizer(self.tokenizer, self.tokenizer_path, len(self.tokenizer))
        if not self.token_ids_param and self.probe_token_ids:
            self.token_ids_param = await self._server_returns_token_ids()
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

    async def _server_returns_token_ids(self) -> bool:
        """Whether the server honours ``return_tokens_as_token_ids`` (exact ids, no string mapping)."""
        body = {
            "model": self.model,
            "prompt": "1",
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": 1,
            "return_tokens_as_token_ids": True,
        }
        try:
            reply = await self._call("POST", "/completions", body)
            tokens = (reply["choices"][0].get("logprobs") or {}).get("tokens") or []
        except Exception as exc:  # an API without the extension may refuse the field: map strings
            log.info("token ids probe: %s; mapping token strings", exc)
            return False
        found = bool(tokens) and all(str(t).startswith(_TOKEN_ID_PREFIX) for t in tokens)
        log.info("token ids probe: the server %s token ids", "returns" if found else "does not return")
        return found

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
        ids = self.mapper.sampled_ids(tokens)
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
