"""Run every ``bench/bench_*.py`` (each in its own process) and rebuild BENCHMARKS.md.

``python -m bench.run_all [NAME ...]`` runs only the named benchmarks; the table always lists
every result file present, so figures measured on another machine (a GPU) are kept.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def render_table() -> str:
    rows = [
        "| benchmark | metric | ours | baseline | ratio | goal | machine | load | date |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        m = r["machine"]
        rows.append(
            f"| {r['title']} (`{r['name']}`) | {r['metric']} | {r['value']:.4g} | "
            f"{r['baseline']['name']}: {r['baseline']['value']:.4g} | **{r['ratio']:.2f}x** | {r['goal']} | "
            f"{m['cpu']}, {m['cores']} cores | {_load(r.get('figures', {}))} | {r['date']} |"
        )
    return "\n".join(rows)


def _load(figures: dict[str, object]) -> str:
    """The 1-minute load average the benchmark recorded while it ran ("" when it did not)."""
    load = figures.get("load_average_1m")
    if isinstance(load, dict) and load and all(isinstance(v, (int, float)) for v in load.values()):
        values = [float(v) for v in load.values()]  # {min, mean, max} or {before, after}
        return f"{min(values):.1f}-{max(values):.1f}"
    if isinstance(load, (int, float)):
        return f"{load:.1f}"
    if isinstance(load, list) and load and all(isinstance(x, (int, float)) for x in load):
        return f"{min(load):.1f}-{max(load):.1f}"
    return ""


def update_benchmarks_md() -> None:
    doc = REPO / "BENCHMARKS.md"
    text = doc.read_text()
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{render_table()}\n{END}{tail}")


def main(argv: list[str]) -> int:
    scripts = sorted(BENCH.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv or s.stem in argv]
    failed = []
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.{script.stem}"], cwd=REPO)
        if code != 0:
            failed.append(script.stem)
    update_benchmarks_md()
    print(f"BENCHMARKS.md updated from {len(list(RESULTS.glob('*.json')))} result files")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
