"""The plots both repro reports draw (``make repro`` and ``make repro-real``): matplotlib, Agg."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cotdistill.pipeline.reports import wilson

COLORS = ("#c44e52", "#4c72b0", "#dd8452", "#55a868")


def _band(p: float, n: int) -> tuple[float, float]:
    """The 95% Wilson interval of accuracy ``p`` on ``n`` questions, in points."""
    lo, hi = wilson(p, n)
    return 100 * lo, 100 * hi


def bar(
    plt: Any,
    path: Path,
    labels: list[str],
    stats: list[tuple[float, float, int]],
    title: str,
    n: int | None = None,
) -> None:
    """Mean accuracy per label (%; unmeasured bars at 0). Error bars: the seed standard deviation,
    or with ``n`` (test questions per accuracy) the 95% Wilson interval of the mean, which is the
    noise that matters when there is one seed."""
    fig, ax = plt.subplots(figsize=(4.5, 3))
    heights = [0.0 if math.isnan(s[0]) else 100 * s[0] for s in stats]
    if n:
        bands = [_band(h / 100, n) for h in heights]
        below = [h - lo for h, (lo, _) in zip(heights, bands, strict=True)]
        errors: Any = [below, [hi - h for h, (_, hi) in zip(heights, bands, strict=True)]]
    else:
        errors = [0.0 if math.isnan(s[1]) else 100 * s[1] for s in stats]
    ax.bar(labels, heights, yerr=errors, capsize=4, color="#4c72b0")
    ax.set_ylabel("accuracy (%)" + (f", 95% CI on {n} q" if n else ""))
    ax.set_ylim(0, 100)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curves(
    plt: Any,
    path: Path,
    groups: dict[str, list[dict[str, Any]]],
    key: str,
    target: float,
    ylabel: str = "ID accuracy (%)",
    n: int | None = None,
) -> None:
    """Accuracy (``key``) against step for every run of every group, one colour per group, with
    the target as a dotted line; with ``n`` (test questions per point) each run's 95% Wilson band."""
    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    for (name, runs), color in zip(groups.items(), COLORS, strict=False):
        for i, run in enumerate(runs):
            xs = [s for s in run["steps"] if s > 0]
            ys = [100 * run["steps"][s].get(key, 0.0) for s in xs]
            ax.plot(xs, ys, color=color, marker="o", markersize=3, alpha=0.8, label=name if i == 0 else None)
            if n and xs:
                bands = [_band(y / 100, n) for y in ys]
                ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], color=color, alpha=0.12)
    ax.axhline(100 * target, color="grey", linestyle=":", label="target")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
