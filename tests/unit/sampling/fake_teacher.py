"""An in-process teacher behind the narrow gRPC interface, for driver unit tests.

It answers Info and streams deterministic Sample results; ``faults`` scripts what goes wrong
(abort with a status, or cut the stream after some results) call by call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from cotdistill.v1 import common_pb2, teacher_pb2, teacher_pb2_grpc


@dataclass
class Fault:
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    after: int = 0  # results streamed before the failure
    cut: bool = False  # end the stream early without an error status
    aborted: bool = False  # stream every result, with finish reason ABORT


@dataclass
class FakeTeacher(teacher_pb2_grpc.TeacherServiceServicer):
    tokenizer_hash: str = "abc123"
    model_id: str = "fake-teacher"
    faults: list[Fault | None] = field(default_factory=list)  # one per Sample call; None: no fault
    calls: list[str] = field(default_factory=list)  # request ids seen ("score" for Score calls)
    score_requests: list[teacher_pb2.ScoreRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0  # most Score calls seen at once
    chat_template: str = ""
    delay_s: float = 0.0

    async def Info(
        self, request: teacher_pb2.InfoRequest, context: grpc.aio.ServicerContext
    ) -> teacher_pb2.InfoResponse:
        return teacher_pb2.InfoResponse(
            model_id=self.model_id,
            backend="fake",
            max_top_k=20,
            context_length=512,
            tokenizer=common_pb2.TokenizerInfo(
                name="fake",
                vocab_size=300,
                tokenizer_vocab_size=300,
                content_hash=self.tokenizer_hash,
                chat_template=self.chat_template,
            ),
        )

    async def Sample(
        self, request: teacher_pb2.SampleRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[teacher_pb2.SampleResponse]:
        self.calls.append(request.request_id)
        fault = self.faults.pop(0) if self.faults else None
        n, k = request.params.n or 1, request.params.top_k_logprobs
        sent = 0
        for p_index, prompt in enumerate(request.prompts):
            for s_index in range(n):
                if fault is not None and fault.aborted:
                    result = response(prompt, p_index, s_index, k)
                    result.finish_reason = common_pb2.FINISH_REASON_ABORT
                    yield result
                    continue
                if fault is not None and sent == fault.after:
                    if fault.cut:
                        return
                    await context.abort(fault.code, "scripted fault")
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield response(prompt, p_index, s_index, k)
                sent += 1

    async def Score(
        self, request: teacher_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> teacher_pb2.ScoreResponse:
        self.calls.append("score")
        self.score_requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            await context.abort(fault.code, "scripted fault")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        k = request.top_k_logprobs
        out = []
        for item in request.items:
            # One "token" per character; token-id completions come back as given.
            ids = list(item.completion_ids) or [ord(ch) % 300 for ch in item.completion]
            prompt_text = (
                item.prompt or "<chat>" + "|".join(m.content for m in item.chat.messages) + item.chat.assistant_prefix
            )
            out.append(
                teacher_pb2.ScoredCompletion(
                    id=item.id,
                    prompt_tokens=len(prompt_text),
                    prompt_text=prompt_text,
                    logprobs=common_pb2.TokenLogprobs(
                        token_ids=ids,
                        token_logprobs=[-0.25] * len(ids),
                        k=k,
                        top_ids=[(i + j) % 300 for i in ids for j in range(k)],
                        top_logprobs=[-0.1 * (j + 1) for _ in ids for j in range(k)],
                    ),
                    # A candidate's logprob: -id/100 (padding -inf), so tests can check the mapping.
                    candidate_logprobs=[-c / 100 if c >= 0 else float("-inf") for c in item.candidate_ids],
                )
            )
        return teacher_pb2.ScoreResponse(completions=out)


def response(prompt: teacher_pb2.Prompt, p_index: int, s_index: int, k: int) -> teacher_pb2.SampleResponse:
    t = 4 + s_index % 3
    ids = [(p_index * 7 + s_index * 3 + j) % 300 for j in range(t)]
    answer = "4" if s_index % 2 == 0 else "5"  # gold "4": even samples are correct
    return teacher_pb2.SampleResponse(
        prompt_index=p_index,
        prompt_id=prompt.id,
        sample_index=s_index,
        text=f"rationale {prompt.id} #{s_index}. The answer is {answer}.",
        prompt_text=prompt.text,
        logprobs=common_pb2.TokenLogprobs(
            token_ids=ids,
            token_logprobs=[-0.5] * t,
            k=k,
            top_ids=[(i + j) % 300 for i in ids for j in range(k)],
            top_logprobs=[-0.1 * (j + 1) for _ in ids for j in range(k)],
        ),
        finish_reason=common_pb2.FINISH_REASON_STOP,
        usage=common_pb2.Usage(prompt_tokens=5, completion_tokens=t),
    )


async def start_fake(teacher: FakeTeacher) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    teacher_pb2_grpc.add_TeacherServiceServicer_to_server(teacher, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def fake_teachers(n: int = 2, **kwargs: object) -> AsyncIterator[list[tuple[FakeTeacher, str]]]:
    """``n`` fake replicas, each (teacher, address); stopped on exit."""
    started = []
    try:
        for _ in range(n):
            fake = FakeTeacher(**kwargs)  # type: ignore[arg-type]
            server, address = await start_fake(fake)
            started.append((fake, server, address))
        yield [(f, a) for f, _, a in started]
    finally:
        for _, server, _ in started:
            await server.stop(None)
