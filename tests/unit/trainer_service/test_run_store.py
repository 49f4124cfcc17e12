"""The SQLite run store: records, paging, state filter and the event log survive reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from cotdistill.common.errors import InvalidArgument, NotFound
from cotdistill.trainer.events import message_event, state_event
from cotdistill.trainer.runs import RunStore, new_run_id
from cotdistill.v1 import trainer_pb2


def _run(state: int = trainer_pb2.RUN_STATE_PENDING) -> trainer_pb2.Run:
    return trainer_pb2.Run(run_id=new_run_id(), state=state, spec=trainer_pb2.RunSpec(name="t"))  # type: ignore[arg-type]


def test_records_and_events_survive_reopening(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "t.sqlite")
    run = store.create(_run())
    first = store.append_event(state_event(run.run_id, trainer_pb2.RUN_STATE_PENDING))
    second = store.append_event(message_event(run.run_id, "hello"))
    store.update(run.run_id, lambda r: setattr(r, "step", 7))
    store.close()

    reopened = RunStore(tmp_path / "t.sqlite")
    assert reopened.get(run.run_id).step == 7
    events = reopened.events(run.run_id)
    assert [e.sequence for e in events] == [1, 2] == [first.sequence, second.sequence]
    assert events[1].message == "hello"
    assert [e.sequence for e in reopened.events(run.run_id, from_sequence=2)] == [2]
    assert reopened.append_event(message_event(run.run_id, "again")).sequence == 3


def test_unknown_run_is_not_found(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "t.sqlite")
    with pytest.raises(NotFound, match="run-nope"):
        store.get("run-nope")


def test_paging_is_newest_first_and_filters_by_state(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "t.sqlite")
    states = [trainer_pb2.RUN_STATE_PENDING, trainer_pb2.RUN_STATE_SUCCEEDED] * 5
    ids = [store.create(_run(s)).run_id for s in states]

    seen, token = [], ""
    while True:
        page, token = store.list_runs(page_size=3, page_token=token)
        assert len(page) <= 3
        seen.extend(r.run_id for r in page)
        if not token:
            break
    assert seen == ids[::-1]

    done, token = store.list_runs(trainer_pb2.RUN_STATE_SUCCEEDED, page_size=100)
    assert token == ""
    assert [r.run_id for r in done] == [
        i for i, s in zip(ids, states, strict=True) if s == trainer_pb2.RUN_STATE_SUCCEEDED
    ][::-1]
    assert {r.run_id for r in store.active()} == {
        i for i, s in zip(ids, states, strict=True) if s == trainer_pb2.RUN_STATE_PENDING
    }


def test_bad_page_arguments_name_the_field(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "t.sqlite")
    with pytest.raises(InvalidArgument) as err:
        store.list_runs(page_token="garbage!")
    assert err.value.field == "page_token"
    with pytest.raises(InvalidArgument) as err:
        store.list_runs(page_size=5000)
    assert err.value.field == "page_size"
