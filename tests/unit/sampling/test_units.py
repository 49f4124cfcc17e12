"""Work unit planning: stable ids, ids that change with what changes the output."""

from __future__ import annotations

import pytest

from cotdistill.pipeline.sampling.units import ExampleRef, JobSpec, UnitParams, plan_units, unit_seed

PARAMS = UnitParams(num_samples=4, temperature=0.7, top_p=1.0, max_tokens=32, top_k_logprobs=5, seed=3)
EXAMPLES = [ExampleRef(id=f"e{i}", prompt=f"Q{i}", gold=str(i)) for i in range(10)]


def spec(params: UnitParams = PARAMS, unit_size: int = 4) -> JobSpec:
    return JobSpec("synthetic_arithmetic", "train", params, unit_size)


def test_units_cover_every_example_once_in_order() -> None:
    units = plan_units(EXAMPLES, spec())
    assert [len(u.examples) for u in units] == [4, 4, 2]
    assert [e.id for u in units for e in u.examples] == [e.id for e in EXAMPLES]
    assert [u.index for u in units] == [0, 1, 2]
    assert units[0].expected_results(4) == 16
    assert units[1].shard_name == f"part-00001-{units[1].unit_id}.parquet"


def test_ids_are_stable_and_unique() -> None:
    first, again = plan_units(EXAMPLES, spec()), plan_units(EXAMPLES, spec())
    assert [u.unit_id for u in first] == [u.unit_id for u in again]
    assert len({u.unit_id for u in first}) == len(first)


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.5},
        {"num_samples": 8},
        {"top_k_logprobs": 0},
        {"seed": 4},
        {"answer_trigger": " Therefore"},
        {"logprob_mode": "processed"},
    ],
)
def test_any_output_relevant_change_changes_every_id(change: dict[str, object]) -> None:
    from dataclasses import replace

    before = {u.unit_id for u in plan_units(EXAMPLES, spec())}
    after = {u.unit_id for u in plan_units(EXAMPLES, spec(replace(PARAMS, **change)))}  # type: ignore[arg-type]
    assert not before & after


def test_raising_the_limit_keeps_the_ids_of_full_units() -> None:
    short = plan_units(EXAMPLES[:8], spec())
    longer = plan_units(EXAMPLES, spec())
    assert [u.unit_id for u in short] == [u.unit_id for u in longer[:2]]


def test_another_prompt_text_is_another_unit() -> None:
    edited = [EXAMPLES[0].__class__(id="e0", prompt="other", gold="0"), *EXAMPLES[1:]]
    assert plan_units(edited, spec())[0].unit_id != plan_units(EXAMPLES, spec())[0].unit_id


def test_seeds_differ_per_unit_and_none_stays_none() -> None:
    seeds = [u.seed for u in plan_units(EXAMPLES, spec())]
    assert len(set(seeds)) == 3 and all(isinstance(s, int) and 0 <= s < 2**56 for s in seeds)
    assert unit_seed(None, 2) is None


def test_duplicate_example_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="'e1' appears twice"):
        plan_units([*EXAMPLES, EXAMPLES[1]], spec())


def test_fingerprint_ignores_nothing_that_matters() -> None:
    assert spec().fingerprint() == spec().fingerprint()
    assert spec().fingerprint() != spec(unit_size=5).fingerprint()
