"""A rich progress bar for sampling: examples done, samples/s, tokens/s, ETA."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cotdistill.pipeline.sampling.manifest import UnitRecord


class RichProgress:
    """Implements the job's ProgressSink on a rich console (quiet when it is not a terminal).

    Rates count only this run's work, so a resumed job shows real throughput, not a burst from
    units found already done.
    """

    def __init__(self, console: Console, *, verb: str = "sampling", items: str = "examples") -> None:
        self.console = console
        self.verb, self.items = verb, items
        self._progress = Progress(
            TextColumn(f"[bold]{verb}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(items),
            TextColumn("{task.fields[samples_s]:.1f} rows/s"),
            TextColumn("{task.fields[tokens_s]:.0f} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._started = 0.0
        self._samples = 0
        self._tokens = 0

    def start(self, total_examples: int, done_examples: int, total_units: int) -> None:
        self._started = time.monotonic()
        self._task = self._progress.add_task(
            self.verb, total=total_examples, completed=done_examples, samples_s=0.0, tokens_s=0.0
        )
        self._progress.start()
        if done_examples:
            self.console.print(f"resuming: {done_examples}/{total_examples} {self.items} already done")

    def unit_done(self, record: UnitRecord) -> None:
        if self._task is None:
            return
        self._samples += record.samples
        self._tokens += record.tokens
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._progress.update(
            self._task,
            advance=record.examples,
            samples_s=self._samples / elapsed,
            tokens_s=self._tokens / elapsed,
        )

    def stop(self) -> None:
        self._progress.stop()
