"""The findings of ``make repro``, computed from the evaluator's result files of the runs.

Reading: :func:`load_run` turns one run directory into accuracies per checkpoint and its
selections. Judging: each verdict compares two numbers against the larger of the seed spread and
the test-set noise, and says "reproduces" only beyond it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cotdistill.pipeline.repro.arms import FULL


def load_run(run_dir: Path) -> dict[str, Any]:
    """{checkpoints: {step: {(dataset, format): accuracy}}, selections: {...}} of one run."""
    per_step: dict[int, dict[str, float]] = {}
    for path in (run_dir / "eval").glob("*.json"):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "results" not in data:
            continue
        cell = per_step.setdefault(int(data.get("step", 0)), {})
        for entry in data["results"]:
            cell[f"{entry['dataset']}|{entry['format']}"] = float(entry["accuracy"])
    selections_file = run_dir / "selections.json"
    selections = json.loads(selections_file.read_text()) if selections_file.is_file() else {}
    return {"steps": dict(sorted(per_step.items())), "selections": selections}


def final(run: dict[str, Any], key: str) -> float | None:
    """Accuracy at the last checkpoint."""
    steps = run["steps"]
    if not steps:
        return None
    last = steps[max(steps)]
    return last.get(key)


def mean_sd(values: Sequence[float | None]) -> tuple[float, float, int]:
    got = [v for v in values if v is not None]
    if not got:
        return float("nan"), float("nan"), 0
    return statistics.fmean(got), (statistics.stdev(got) if len(got) > 1 else 0.0), len(got)


def pct(stats: tuple[float, float, int]) -> str:
    m, sd, n = stats
    if n == 0:
        return "-"
    return f"{100 * m:.1f}" + (f" ± {100 * sd:.1f}" if n > 1 else "")


def steps_to(run: dict[str, Any], key: str, target: float) -> int | None:
    """First checkpoint step whose accuracy reaches ``target`` (None: never)."""
    for s, cell in run["steps"].items():
        if s > 0 and cell.get(key, 0.0) >= target:
            return int(s)
    return None


def steps_interpolated(run: dict[str, Any], key: str, target: float) -> float | None:
    """Step where the accuracy curve crosses ``target``, linear between checkpoints (step 0 = 0%)."""
    prev_step, prev_acc = 0, 0.0
    for s, cell in run["steps"].items():
        if s <= 0:
            continue
        acc = cell.get(key, 0.0)
        if acc >= target:
            return prev_step + (s - prev_step) * (target - prev_acc) / max(acc - prev_acc, 1e-9)
        prev_step, prev_acc = s, acc
    return None


def ahead(a_runs: Sequence[dict[str, Any]], b_runs: Sequence[dict[str, Any]], key: str) -> tuple[int, int, int]:
    """(a ahead, b ahead, tied) over the checkpoints both have, seed by seed."""
    wins = losses = ties = 0
    for a, b in zip(a_runs, b_runs, strict=False):
        for st in sorted(set(a["steps"]) & set(b["steps"])):
            if st <= 0:
                continue
            x, y = a["steps"][st].get(key, 0.0), b["steps"][st].get(key, 0.0)
            wins, losses, ties = wins + (x > y), losses + (x < y), ties + (x == y)
    return wins, losses, ties


def pct1(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def noise_points(a: tuple[float, float, int], b: tuple[float, float, int], n: int) -> float:
    """The noise of a difference a - b, in points: the larger of the seed spread and 1.96 x the
    standard error of a difference of two binomial accuracies on ``n`` test questions each."""
    binomial = 100 * 1.96 * math.sqrt((a[0] * (1 - a[0]) + b[0] * (1 - b[0])) / n)
    return max(100 * max(a[1], b[1]), binomial)


def compare(
    a: tuple[float, float, int],
    b: tuple[float, float, int],
    a_name: str,
    b_name: str,
    on: str = "ID",
    claim: bool = True,
    n: int = FULL.eval_limit,
) -> str:
    """The difference a - b in points, against the larger of the seed spread and the test-set noise.

    Test-set noise: 1.96 x the standard error of a difference of two accuracies on ``n`` test
    questions each (binomial), so a difference inside it is not a finding.
    """
    if a[2] == 0 or b[2] == 0:
        return f"Not measured ({a_name} vs {b_name}): a run is missing."
    diff = 100 * (a[0] - b[0])
    noise = noise_points(a, b, n)
    head = f"{a_name} vs {b_name} ({on}): {diff:+.1f} points"
    if abs(diff) <= noise:
        return f"{head}, within noise (±{noise:.1f}){': **not reproduced**' if claim else ''}."
    if not claim:
        return f"{head} (beyond the noise of ±{noise:.1f})."
    word = "**reproduces**" if diff > 0 else "**does not reproduce (reversed)**"
    return f"{head} (noise ±{noise:.1f}): {word}."


def mixture_verdict(
    mix_ans: tuple[float, float, int],
    cot_ans: tuple[float, float, int],
    mix_cot: tuple[float, float, int],
    cot_cot: tuple[float, float, int],
    n: int,
) -> str:
    """Both halves of the Flan finding: direct answers gained *and* CoT accuracy kept.

    Reporting only the first half would call a mixture that halves CoT accuracy a reproduction.
    ``n``: test questions per accuracy.
    """
    gain = compare(mix_ans, cot_ans, "mixture", "CoT only", "answer-only prompt, ID", claim=False, n=n)
    cost = compare(mix_cot, cot_cot, "mixture", "CoT only", "CoT prompt, ID", claim=False, n=n)
    if min(mix_ans[2], cot_ans[2], mix_cot[2], cot_cot[2]) == 0:
        return "Not measured: a run is missing."
    gained = "within noise" not in gain and mix_ans[0] > cot_ans[0]
    kept = "within noise" in cost or mix_cot[0] >= cot_cot[0]
    if gained and kept:
        word = "**reproduces** (direct answers gained, CoT accuracy kept)"
    elif gained:
        word = "**reproduces in part** (direct answers gained, but CoT accuracy lost)"
    elif kept:
        word = "**not reproduced** (no direct-answer gain beyond noise)"
    else:
        word = "**not reproduced** (no direct-answer gain, CoT accuracy lost)"
    return f"{gain[:-1]}; {cost[:-1]}: {word}."


def step_list(values: Sequence[int | None]) -> str:
    return ", ".join("never" if v is None else str(v) for v in values) or "-"


def interpolated_list(values: Sequence[float | None]) -> str:
    return ", ".join("never" if v is None else f"{v:.0f}" for v in values) or "-"


def steps_verdict(
    kd: Sequence[int | None],
    sft: Sequence[int | None],
    every: int,
    interpolated: tuple[Sequence[float | None], Sequence[float | None]],
    ahead_counts: tuple[int, int, int],
) -> str:
    """Verdict of (d): the checkpoint grid first, the interpolated crossing when the grid ties."""

    def mean(xs: Sequence[float | None]) -> float | None:
        got = [x for x in xs if x is not None]
        return statistics.fmean(got) if got and len(got) == len(xs) else None

    k, s = mean(kd), mean(sft)
    if k is None or s is None:
        return (
            f"At least one seed never reached the target (checkpoints every {every} steps): compare the curves below."
        )
    if k < s:
        return (
            f"Distribution matching reached the target after {k:.0f} steps vs {s:.0f}: **reproduces** "
            f"(resolution {every} steps)."
        )
    if k > s:
        return f"Distribution matching was slower ({k:.0f} vs {s:.0f} steps): **does not reproduce**."
    ki, si = mean(interpolated[0]), mean(interpolated[1])
    won, lost, _ = ahead_counts
    head = f"Both reached it after {k:.0f} steps on average (grid of {every} steps)"
    if ki is None or si is None:
        return f"{head}: **no speed-up**."
    crossing = f"interpolated, distribution matching crossed it after {ki:.0f} steps vs {si:.0f}"
    if ki < si and won > lost:
        return (
            f"{head}; {crossing} ({100 * (si - ki) / si:.0f}% fewer) and was ahead at {won} of "
            f"{sum(ahead_counts)} checkpoints: **reproduces weakly** (a small speed-up, below the grid's resolution)."
        )
    return (
        f"{head}; {crossing}: **no speed-up** to the target, though SFT + KD was ahead at {won} of "
        f"{sum(ahead_counts)} checkpoints (behind at {lost})."
    )


def format_cells(id_name: str, ood_name: str, cot_format: str, answer_format: str) -> dict[str, str]:
    """The four (f) result keys of one pair of formats: CoT / answer-only prompt, ID / OOD."""
    return {
        "cot": f"{id_name}|{cot_format}",
        "cot_ood": f"{ood_name}|{cot_format}",
        "ans": f"{id_name}|{answer_format}",
        "ans_ood": f"{ood_name}|{answer_format}",
    }


def selection_verdict(informative: Sequence[tuple[str, int, int, float, float]], flat: Sequence[str], n: int) -> str:
    """Fu et al.: OOD selection keeps OOD ability that ID selection gives up, at some ID cost.

    Only runs whose OOD accuracy is above zero somewhere can show it; a gain counts when it is
    beyond the test noise of one accuracy difference at 50% (the widest: 1.96 * sqrt(0.5 / n)).
    """
    if not informative:
        return (
            "OOD accuracy is 0 at every checkpoint of every run: the two signals cannot differ on OOD, "
            "**not measurable** at this scale."
        )
    noise = 100 * 1.96 * math.sqrt(0.5 / n)
    parts = [
        f"{name}: step {by_ood} instead of {by_id}, {gain:+.1f} OOD / {-lost:+.1f} ID points"
        for name, by_id, by_ood, gain, lost in informative
    ]
    shown = [name for name, _, _, gain, _ in informative if gain > noise]
    word = (
        f"**reproduces** on {', '.join(shown)} (OOD gain beyond the noise of ±{noise:.1f})"
        if shown
        else f"**not reproduced** (no OOD gain beyond the noise of ±{noise:.1f})"
    )
    return (
        "Where OOD accuracy is above zero along training, OOD selection vs ID selection: "
        + "; ".join(parts)
        + f": {word}."
        + (
            f" OOD accuracy is 0% at every checkpoint of {', '.join(flat)}: there the signals cannot differ."
            if flat
            else ""
        )
    )


def tied_count(run: dict[str, Any], signal: str) -> int:
    """How many candidates share the chosen checkpoint's value of ``signal`` (1: no tie)."""
    selection = run["selections"].get(signal, {})
    table = selection.get("table", [])
    index = selection.get("chosen_index")
    if not table or index is None or index >= len(table):
        return 1
    best = table[index].get("signal_value")
    return sum(1 for row in table if row.get("signal_value") == best)


def chosen_step(run: dict[str, Any], signal: str) -> int:
    chosen = run["selections"].get(signal, {}).get("chosen", {})
    return int(chosen.get("step", 0))


def kept_fraction(runs: Path, task: str, d: int) -> str:
    for path in (runs / f"sample-{task}-d{d}").rglob("*stats*.json"):
        data = json.loads(path.read_text())
        if "kept" in data and "total" in data:
            return f"{data['kept']}/{data['total']}"
    return "-"
