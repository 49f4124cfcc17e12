"""Evaluation reports: JSON + Markdown + PNG plots from a run's ``eval/*.json`` results.

Pure functions of the result files the evaluator writes (schema ``cotdistill.eval/v1``), so the
CLI (``cotdistill report RUN``) and the evaluator render the same report without importing each
other. Plots (matplotlib, Agg backend, no display needed):

* ``accuracy_vs_step.png``: student accuracy per dataset against training step, ID solid and
  OOD dashed, 95% intervals as bands, the selected checkpoint marked;
* ``teacher_vs_student.png``: accuracy per dataset, teacher beside the best student;
* ``accuracy_vs_d.png``: accuracy against D (rationales per training question), when results
  carry several values of the ``num_samples`` tag;
* ``scaling.png``: accuracy against student parameters, when several student sizes exist.

A plot is drawn only when the results hold what it needs; the Markdown says why one is absent.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_SCHEMA = "cotdistill.eval/v1"
GROUP_TITLES = {"in_distribution": "ID", "out_of_distribution": "OOD", "generic": "generic"}
LINESTYLES = {"in_distribution": "-", "out_of_distribution": "--", "generic": ":"}


@dataclass
class Report:
    """Where a rendered report lives and what it holds."""

    directory: Path
    markdown: Path
    json: Path
    plots: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def load_results(run_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The evaluation results under ``RUN/eval/*.json`` (sorted by step, then label) and the selection.

    Files that are not evaluation results (other schema) are ignored; a file that does not parse
    raises ValueError naming it.
    """
    eval_dir = Path(run_dir) / "eval"
    results: list[dict[str, Any]] = []
    selection = None
    for path in sorted(eval_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
        if path.name == "selection.json":
            selection = data
        elif isinstance(data, dict) and data.get("schema") == RESULT_SCHEMA:
            data.setdefault("result_path", str(path))
            results.append(data)
    results.sort(key=lambda r: (int(r.get("step", 0)), str(r.get("label", ""))))
    return results, selection


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of an accuracy ``p`` measured on ``n`` questions."""
    if n <= 0:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per evaluated model and format under ``RUN/eval``, sorted by step then label:
    ``label``, ``role``, ``step``, ``format`` and ``acc``: per dataset ``accuracy``, ``n`` (questions)
    and ``ci95`` (the evaluator's Wilson interval; recomputed where an old file lacks it)."""
    results, _ = load_results(run_dir)
    rows: list[dict[str, Any]] = []
    for data in results:
        by_format: dict[str, dict[str, Any]] = {}
        for entry in data.get("results", []):
            row = by_format.setdefault(
                entry["format"],
                {
                    "label": str(data.get("label", Path(str(data.get("result_path", ""))).stem)),
                    "role": role_of(data),
                    "step": int(data.get("step", 0)),
                    "format": entry["format"],
                    "acc": {},
                },
            )
            accuracy, n = float(entry["accuracy"]), int(entry.get("total") or 0)
            if "ci_low" in entry and "ci_high" in entry:
                ci = (float(entry["ci_low"]), float(entry["ci_high"]))
            else:
                ci = wilson(accuracy, n)
            row["acc"][entry["dataset"]] = {"accuracy": accuracy, "n": n, "ci95": ci}
        rows.extend(by_format.values())
    return rows


def role_of(result: dict[str, Any]) -> str:
    """``teacher`` or ``student`` (the default)."""
    role = str(result.get("tags", {}).get("role", "")).lower()
    if role:
        return role
    return "teacher" if result.get("backend") == "teacher" else "student"


def _family(result: dict[str, Any]) -> str:
    """Which training run a student result belongs to: run name, D and size."""
    tags = result.get("tags", {})
    parts = [str(tags["run"])] if tags.get("run") else []
    if tags.get("num_samples"):
        parts.append(f"D={tags['num_samples']}")
    if result.get("num_parameters"):
        parts.append(f"{int(result['num_parameters']) / 1e6:.2g}M")
    return " ".join(parts) or "student"


def _series_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    return entry["dataset"], entry["format"], entry["group"]


def _short_number(x: float) -> str:
    """1 -> "1", 55296 -> "55k", 2.1e6 -> "2.1M"."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _best_student(students: Sequence[dict[str, Any]], selection: dict[str, Any] | None) -> dict[str, Any] | None:
    """The selected student when a selection exists, else the one with the best mean accuracy."""
    if not students:
        return None
    if selection:
        chosen = selection.get("chosen", {})
        for r in students:
            if r.get("label") == chosen.get("label") and int(r.get("step", 0)) == int(chosen.get("step", 0)):
                return r

    def mean_acc(r: dict[str, Any]) -> float:
        accs = [e["accuracy"] for e in r["results"]]
        return sum(accs) / len(accs) if accs else 0.0

    return max(students, key=lambda r: (mean_acc(r), int(r.get("step", 0))))


def _plot_accuracy_vs_step(
    students: Sequence[dict[str, Any]], selection: dict[str, Any] | None, out: Path
) -> str | None:
    """Returns why the plot was skipped, or None when it was written."""
    # One curve per training run ("family": same run, D and size) and (dataset, format); at a
    # repeated step the later result wins.
    by_step: dict[tuple[str, str, str, str], dict[int, tuple[float, float, float]]] = defaultdict(dict)
    for r in students:
        step = int(r.get("step", 0))
        if step <= 0:
            continue
        for e in r["results"]:
            by_step[(_family(r), *_series_key(e))][step] = (e["accuracy"], e["ci_low"], e["ci_high"])
    series = {k: sorted((s, *v) for s, v in pts.items()) for k, pts in by_step.items() if len(pts) >= 2}
    if not series:
        return "needs student results at two or more training steps"
    families = {k[0] for k in series}
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for (family, dataset, fmt, group), points in sorted(series.items(), key=lambda kv: (kv[0][3], kv[0][1])):
        steps = [p[0] for p in points]
        label = f"{dataset} ({GROUP_TITLES.get(group, group)}, {fmt})"
        if len(families) > 1:
            label += f" [{family}]"
        (line,) = ax.plot(steps, [100 * p[1] for p in points], LINESTYLES.get(group, "-"), marker="o", label=label)
        ax.fill_between(
            steps, [100 * p[2] for p in points], [100 * p[3] for p in points], color=line.get_color(), alpha=0.12
        )
    if selection and selection.get("chosen", {}).get("step"):
        step = int(selection["chosen"]["step"])
        ax.axvline(step, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"selected ({selection.get('signal', '')})", (step, 2), fontsize=7, color="grey", rotation=90)
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Student accuracy vs training step (bands: 95% Wilson)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return None


def _plot_teacher_vs_student(teacher: dict[str, Any] | None, student: dict[str, Any] | None, out: Path) -> str | None:
    if teacher is None or student is None:
        return "needs a teacher result (tag role=teacher or the teacher backend) and a student result"
    t = {_series_key(e): e for e in teacher["results"]}
    s = {_series_key(e): e for e in student["results"]}
    keys = sorted(set(t) & set(s), key=lambda k: (k[2], k[0], k[1]))
    if not keys:
        return "teacher and student share no (dataset, format)"
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(keys) + 2), 3.8), dpi=100)
    width = 0.38
    xs = range(len(keys))
    for offset, (who, table) in zip((-width / 2, width / 2), (("teacher", t), ("student", s)), strict=True):
        accs = [100 * table[k]["accuracy"] for k in keys]
        low = [100 * (table[k]["accuracy"] - table[k]["ci_low"]) for k in keys]
        high = [100 * (table[k]["ci_high"] - table[k]["accuracy"]) for k in keys]
        name = teacher["label"] if who == "teacher" else student["label"]
        ax.bar([x + offset for x in xs], accs, width, yerr=[low, high], capsize=3, label=f"{who}: {name}")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{k[0]}\n{GROUP_TITLES.get(k[2], k[2])}, {k[1]}" for k in keys], fontsize=7)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Teacher vs student (error bars: 95% Wilson)")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return None


def _latest_per(students: Sequence[dict[str, Any]], key: str) -> dict[float, dict[str, Any]]:
    """For each value of ``key`` (a tag, or num_parameters), the student result at the highest step."""
    out: dict[float, dict[str, Any]] = {}
    for r in students:
        raw = r.get("tags", {}).get(key) if key != "num_parameters" else r.get("num_parameters")
        try:
            value = float(raw) if raw not in (None, "", 0) else math.nan
        except (TypeError, ValueError):
            continue
        if math.isnan(value) or value <= 0:
            continue
        if value not in out or int(r.get("step", 0)) >= int(out[value].get("step", 0)):
            out[value] = r
    return out


def _plot_against(
    points: dict[float, dict[str, Any]], out: Path, *, xlabel: str, title: str, log_x: bool, need: str
) -> str | None:
    if len(points) < 2:
        return need
    import matplotlib.pyplot as plt

    series: dict[tuple[str, str, str], list[tuple[float, float, float, float]]] = defaultdict(list)
    for x, r in points.items():
        for e in r["results"]:
            series[_series_key(e)].append((x, e["accuracy"], e["ci_low"], e["ci_high"]))
    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=100)
    for (dataset, fmt, group), pts in sorted(series.items(), key=lambda kv: (kv[0][2], kv[0][0])):
        pts.sort()
        xs = [p[0] for p in pts]
        ax.errorbar(
            xs,
            [100 * p[1] for p in pts],
            yerr=[[100 * (p[1] - p[2]) for p in pts], [100 * (p[3] - p[1]) for p in pts]],
            fmt=LINESTYLES.get(group, "-"),
            marker="o",
            capsize=3,
            label=f"{dataset} ({GROUP_TITLES.get(group, group)}, {fmt})",
        )
    if log_x:
        from matplotlib.ticker import NullFormatter, NullLocator

        ax.set_xscale("log")
        ticks = sorted(points)
        ax.set_xticks(ticks)
        ax.set_xticklabels([_short_number(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        pad = 1.25
        ax.set_xlim(ticks[0] / pad, ticks[-1] * pad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return None


def _markdown(
    results: Sequence[dict[str, Any]],
    selection: dict[str, Any] | None,
    report: Report,
    teacher: dict[str, Any] | None,
    student: dict[str, Any] | None,
) -> str:
    lines = ["# Evaluation report", ""]
    lines.append(
        f"{len(results)} evaluation(s). Accuracy in %, with the 95% Wilson interval and counts. "
        "ID = in-distribution, OOD = out-of-distribution, generic = generic-ability set."
    )
    lines += [
        "",
        "## Summary by group",
        "",
        "| model | step | role | ID | OOD | generic |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        g = r.get("group_accuracy", {})
        cells = [_pct(g[k]) if k in g else "-" for k in ("in_distribution", "out_of_distribution", "generic")]
        lines.append(f"| {r['label']} | {r.get('step', 0)} | {role_of(r)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Per dataset",
        "",
        "| model | step | dataset | split | format | group | accuracy | 95% CI | correct/total | cached |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for e in r["results"]:
            lines.append(
                f"| {r['label']} | {r.get('step', 0)} | {e['dataset']} | {e['split']} | {e['format']} | "
                f"{GROUP_TITLES.get(e['group'], e['group'])} | {_pct(e['accuracy'])} | "
                f"[{_pct(e['ci_low'])}, {_pct(e['ci_high'])}] | {e['correct']}/{e['total']} | "
                f"{'yes' if e.get('cached') else 'no'} |"
            )
    if selection:
        chosen = selection.get("chosen", {})
        lines += [
            "",
            "## Model selection",
            "",
            f"Signal: **{selection.get('signal')}**"
            + (f" (id_weight {selection.get('id_weight')})" if selection.get("signal") == "weighted" else "")
            + f"; chosen: **{chosen.get('label')}** (step {chosen.get('step')}).",
            "",
            "| candidate | step | signal value | ID acc | OOD acc | validation loss |",
            "|---|---|---|---|---|---|",
        ]
        for row in selection.get("table", []):

            def fmt(v: Any, pct: bool = True) -> str:
                if v is None:
                    return "-"
                return _pct(v) if pct else f"{v:.4f}"

            mark = " (chosen)" if row.get("label") == chosen.get("label") else ""
            loss = selection.get("signal") == "validation_loss"
            lines.append(
                f"| {row['label']}{mark} | {row['step']} | {fmt(row['signal_value'], not loss)} | "
                f"{fmt(row.get('in_distribution_accuracy'))} | {fmt(row.get('out_of_distribution_accuracy'))} | "
                f"{fmt(row.get('validation_loss'), False)} |"
            )
    lines += ["", "## Plots", ""]
    for name, path in report.plots.items():
        lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({path.name})", ""]
    for name, why in report.skipped.items():
        lines.append(f"- {name.replace('_', ' ')}: not drawn ({why}).")
    lines += ["", "## Files", ""]
    for r in results:
        lines.append(f"- {r['label']}: `{Path(r.get('result_path', '')).name}` (model hash `{r['model_hash'][:12]}`)")
        for e in r["results"]:
            lines.append(f"  - predictions {e['dataset']}/{e['format']}: `{e.get('predictions_path', '')}`")
    return "\n".join(lines) + "\n"


def render_report(
    results: Sequence[dict[str, Any]], out_dir: str | Path, selection: dict[str, Any] | None = None
) -> Report:
    """Write ``report.json``, ``report.md`` and the plots into ``out_dir``; returns where they are."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, out / "report.md", out / "report.json")
    students = [r for r in results if role_of(r) == "student"]
    teachers = [r for r in results if role_of(r) == "teacher"]
    teacher = teachers[-1] if teachers else None
    student = _best_student(students, selection)
    plans = {
        "accuracy_vs_step": lambda p: _plot_accuracy_vs_step(students, selection, p),
        "teacher_vs_student": lambda p: _plot_teacher_vs_student(teacher, student, p),
        "accuracy_vs_d": lambda p: _plot_against(
            _latest_per(students, "num_samples"),
            p,
            xlabel="D (rationales per training question)",
            title="Student accuracy vs diverse reasoning samples D",
            log_x=True,
            need="needs student results tagged with two or more values of num_samples (D)",
        ),
        "scaling": lambda p: _plot_against(
            _latest_per(students, "num_parameters"),
            p,
            xlabel="student parameters",
            title="Scaling: accuracy vs student size",
            log_x=True,
            need="needs student results of two or more model sizes",
        ),
    }
    for name, draw in plans.items():
        path = out / f"{name}.png"
        why = draw(path)
        if why is None:
            report.plots[name] = path
        else:
            report.skipped[name] = why
            path.unlink(missing_ok=True)  # a stale plot from an earlier render would mislead
    summary = {
        "results": list(results),
        "selection": selection,
        "teacher": teacher["label"] if teacher else None,
        "best_student": student["label"] if student else None,
        "plots": {k: v.name for k, v in report.plots.items()},
        "skipped_plots": report.skipped,
    }
    report.json.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    report.markdown.write_text(_markdown(results, selection, report, teacher, student))
    return report


def render_run_report(run_dir: str | Path, out_dir: str | Path | None = None) -> Report:
    """Render the report of a run directory (``RUN/eval/*.json``) into ``RUN/report/`` by default.

    Raises FileNotFoundError when the run has no evaluation results.
    """
    results, selection = load_results(run_dir)
    if not results:
        raise FileNotFoundError(f"no evaluation results (eval/*.json) under {run_dir}")
    return render_report(results, out_dir or Path(run_dir) / "report", selection)
