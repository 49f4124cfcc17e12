"""lm-eval (the real harness, pinned) against the served student on loopback, no `tokenizer=`.

* ``local-completions``: a ``generate_until`` task and a ``multiple_choice`` (loglikelihood) task.
  lm-eval finds /tokenizer_info + /tokenize by itself (its remote tokenizer), sends token-id
  prompts with ``echo`` + ``logprobs`` + ``max_tokens=1`` in batches, and reads the continuation's
  logprobs back; those must equal the student's own log-softmax (computed here with transformers).
* ``local-chat-completions`` (``apply_chat_template``): the ``generate_until`` task through
  /v1/chat/completions and the checkpoint's chat template. lm-eval itself refuses loglikelihood in
  chat mode ("not supported for chat completions"), so multiple choice runs in completions mode.

Local JSONL tasks, HF_HUB_OFFLINE=1: nothing is downloaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server.conftest import (
    API_KEY,
    MODEL,
    RunningServer,
    chat_templated_student,
    server_settings,
    start_server,
)

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is installed by `make setup` (requirements/lock.txt)")

QUESTIONS = [
    ("Tom has 3 apples. Tom buys 2 more. How many apples does Tom have?", "5"),
    ("Ana has 4 pens. Ana buys 1 more. How many pens does Ana have?", "5"),
    ("Lee has 7 coins. Lee buys 2 more. How many coins does Lee have?", "9"),
    ("Mia has 2 books. Mia buys 6 more. How many books does Mia have?", "8"),
]


def _write_tasks(root: Path) -> Path:
    data = root / "data"
    data.mkdir()
    with (data / "arith.jsonl").open("w") as f:
        for q, a in QUESTIONS:
            f.write(json.dumps({"question": q, "answer": a}) + "\n")
    with (data / "choice.jsonl").open("w") as f:
        for i, (q, a) in enumerate(QUESTIONS):
            wrong = str(int(a) + 3)
            choices = [a, wrong] if i % 2 == 0 else [wrong, a]
            f.write(json.dumps({"question": q, "choices": choices, "label": choices.index(a)}) + "\n")
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "cot_arith_gen.yaml").write_text(
        f"""task: cot_arith_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data / "arith.jsonl"}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}} ###"
doc_to_target: " {{{{answer}}}}"
generation_kwargs:
  until: ["END"]
  max_gen_toks: 12
  temperature: 0
metric_list:
  - metric: exact_match
metadata:
  version: 1
"""
    )
    (tasks / "cot_arith_mc.yaml").write_text(
        f"""task: cot_arith_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data / "choice.jsonl"}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}} ### The answer is"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: " "
metric_list:
  - metric: acc
metadata:
  version: 1
"""
    )
    return tasks


@pytest.fixture(scope="module")
def harness(
    tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, Path, Path]]:
    root = tmp_path_factory.mktemp("lm-eval")
    model = chat_templated_student(tiny_models["student"], root)
    server = start_server(server_settings(model, max_concurrent=8))
    yield server, _write_tasks(root), model
    server.stop()


def _evaluate(
    server: RunningServer, tasks: Path, mode: str, task: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)  # lm-eval's API models send it as the bearer token
    endpoint = "chat/completions" if mode == "local-chat-completions" else "completions"
    args = {"model": MODEL, "base_url": f"{server.base_url}/v1/{endpoint}", "max_retries": 1, "timeout": 60}
    if mode == "local-completions":
        args["batch_size"] = 4  # several prompts per request: the server scores them in one batch
    return simple_evaluate(
        model=mode,
        model_args=args,
        tasks=[task],
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        apply_chat_template=mode == "local-chat-completions",
        log_samples=True,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
    )


def _reference_loglikelihood(model_dir: Path, context: str, continuation: str) -> float:
    """What the student assigns to ``continuation`` after ``context`` (lm-eval's tokenization)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    # lm-eval splits at the context's token count (its _encode_pair does the same).
    cont = whole[len(ctx) :]
    ids = torch.tensor([ctx + cont])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return float(sum(logprobs[len(ctx) - 1 + i, t] for i, t in enumerate(cont)))


def test_multiple_choice_loglikelihood_in_completions_mode(
    harness: tuple[RunningServer, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, tasks, model = harness
    before = server.metric('cotdistill_http_requests_total{route="/tokenize",status="200"}')
    results = _evaluate(server, tasks, "local-completions", "cot_arith_mc", monkeypatch)
    acc = results["results"]["cot_arith_mc"]["acc,none"]
    assert 0.0 <= acc <= 1.0
    # lm-eval used our tokenizer endpoints (no tokenizer= argument, no hub).
    assert server.metric('cotdistill_http_requests_total{route="/tokenize",status="200"}') > before
    samples = results["samples"]["cot_arith_mc"]
    assert len(samples) == len(QUESTIONS)
    first = samples[0]
    for (context, continuation), resp in zip(first["arguments"], first["resps"], strict=True):
        served_ll = resp[0][0]
        assert math.isfinite(served_ll) and served_ll < 0
        assert served_ll == pytest.approx(_reference_loglikelihood(model, context, continuation), abs=1e-3)


def test_generate_until_in_completions_and_chat_modes(
    harness: tuple[RunningServer, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, tasks, _ = harness
    chat_before = server.metric('cotdistill_http_requests_total{route="/v1/chat/completions",status="200"}')
    for mode in ("local-completions", "local-chat-completions"):
        results = _evaluate(server, tasks, mode, "cot_arith_gen", monkeypatch)
        assert 0.0 <= results["results"]["cot_arith_gen"]["exact_match,none"] <= 1.0
        samples = results["samples"]["cot_arith_gen"]
        assert len(samples) == len(QUESTIONS)
        assert all(isinstance(s["resps"][0][0], str) for s in samples)
    # The chat mode went through /v1/chat/completions (rendered by the checkpoint's template).
    chat = server.metric('cotdistill_http_requests_total{route="/v1/chat/completions",status="200"}')
    assert chat - chat_before == len(QUESTIONS)
