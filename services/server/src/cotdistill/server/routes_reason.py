"""POST /v1/reason: the student's own format in, ``{rationale, answer}`` out.

The prompt is built exactly as the student was fine-tuned (``student_prompt``), generation stops
where its training completions ended (``student_stop``), and the completion is split back into
rationale and answer (``parse_student_completion``, then ``extract_answer`` to normalize).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from cotdistill.common.errors import CotdistillError, InvalidArgument
from cotdistill.common.tasks import extract_answer, parse_student_completion, student_prompt, student_stop
from cotdistill.server.auth import Authenticated
from cotdistill.server.engine.base import Engine, SamplingParams
from cotdistill.server.errors import bad_request
from cotdistill.server.execution import admit, context, run_to_end
from cotdistill.server.generation import Job, check_max_tokens, validate_prompt
from cotdistill.server.openapi import GENERATION_RESPONSES
from cotdistill.server.protocol import Latency, ReasonRequest, ReasonResponse, Usage

router = APIRouter(prefix="/v1", dependencies=[Authenticated], tags=["cotdistill"])


@router.post("/reason", response_model=ReasonResponse, responses=GENERATION_RESPONSES)
async def reason(body: ReasonRequest, request: Request) -> ReasonResponse:
    """Answer a question with a rationale, in the format the student was trained on."""
    ctx = context(request)
    served = ctx.holder.current
    # The request's format, else the operator's, else the one the checkpoint was trained in.
    fmt = body.format or ctx.settings.reason_format or (served.training_format if served else "") or "ft_cot"
    try:
        prompt = student_prompt(fmt, body.question, dataset=body.dataset or "")
        stop = tuple(student_stop(fmt))
        if body.dataset:
            extract_answer("", body.dataset)  # an unknown dataset/answer type fails now, not after generating
    except InvalidArgument:
        raise  # names its own field (e.g. an unknown format)
    except CotdistillError as exc:  # unknown dataset, its exemplar files missing, ...
        raise bad_request("dataset" if body.dataset else "format", str(exc)) from exc
    max_tokens = check_max_tokens(body.max_tokens or ctx.settings.max_tokens_cap, ctx.settings)

    def make_jobs(engine: Engine) -> list[Job]:
        ids = engine.tokenize(prompt)
        budget = min(max_tokens, engine.max_model_len - len(ids)) if body.max_tokens is None else max_tokens
        validate_prompt(ids, engine, ctx.settings, max(1, budget), "question")
        params = SamplingParams(
            max_tokens=max(1, budget), temperature=body.temperature, top_p=body.top_p, stop=stop, seed=body.seed
        )
        return [Job(0, 0, ids, params)]

    admitted = await admit(ctx, request, make_jobs)
    [choice] = await run_to_end(ctx, request, admitted)
    rationale, raw_answer = parse_student_completion(fmt, choice.text)
    answer = extract_answer(raw_answer, body.dataset, after_trigger=True) if body.dataset else raw_answer
    trace = admitted.trace
    prompt_tokens = len(admitted.jobs[0].prompt_ids)
    return ReasonResponse(
        rationale=rationale,
        answer=answer,
        raw_answer=raw_answer,
        text=choice.text,
        format=fmt,
        model=ctx.settings.served_model_name,
        finish_reason=choice.finish_reason or "stop",
        usage=Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=len(choice.token_ids),
            total_tokens=prompt_tokens + len(choice.token_ids),
        ),
        latency=Latency(
            total_s=(trace.finished or time.perf_counter()) - trace.arrival,
            time_to_first_token_s=trace.ttft_s(),
            queue_s=trace.queue_s(),
        ),
    )
