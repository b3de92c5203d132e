"""What a person sees while a study runs.

On a terminal: one live table of every stage (done, running, pending or cached), the running
stage's elapsed time, and an estimate of the time left for the whole run. Elsewhere (CI, a
pipe): one plain line per finished stage with its duration. The estimate scales typical
durations per kind of stage (measured on this project's 2-core machine) by how fast the
stages finished so far have run against them.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

# Seconds per stage kind in the full demo on an idle 2-core machine: a prior for the estimate.
TYPICAL_SECONDS = {"pretrain": 80.0, "midtrain": 47.0, "eval": 47.0, "curve": 14.0,
                   "posttrain": 31.0, "synth": 3.0, "filter": 2.0, "tokenizer": 3.0,
                   "corpus": 2.0, "pack": 1.0, "mix": 0.5}


def kind_of(stage: str) -> str:
    return stage.split("-", 1)[0]


class PlainProgress:
    """One line per finished stage."""

    def __init__(self, console: Console):
        self.console = console

    def started(self, stage: str) -> None:
        pass

    def finished(self, stage: str, seconds: float) -> None:
        self.console.print(f"stage {stage} done in {seconds:.1f} s", markup=False,
                           highlight=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class LiveProgress:
    """A redrawn table of the run's stages with the time left."""

    def __init__(self, console: Console, stages: list[str], cached: list[str]):
        self.stages = stages
        self.state = {s: ("cached" if s in cached else "pending") for s in stages}
        self.seconds: dict[str, float] = {}
        self.running: tuple[str, float] | None = None
        self.start = time.perf_counter()
        self.live = Live(self._render(), console=console, refresh_per_second=2,
                         get_renderable=self._render)

    def __enter__(self):
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def started(self, stage: str) -> None:
        self.state[stage] = "running"
        self.running = (stage, time.perf_counter())

    def finished(self, stage: str, seconds: float) -> None:
        self.state[stage] = "done"
        self.seconds[stage] = seconds
        self.running = None

    def remaining(self) -> float:
        """Seconds left: typical durations of what is pending, scaled by the pace so far."""
        done = [(kind_of(s), t) for s, t in self.seconds.items() if kind_of(s) in TYPICAL_SECONDS]
        typical = sum(TYPICAL_SECONDS[k] for k, _ in done)
        pace = sum(t for _, t in done) / typical if typical > 1 else 1.0
        left = sum(TYPICAL_SECONDS.get(kind_of(s), 2.0) for s, st in self.state.items()
                   if st == "pending") * pace
        if self.running:
            stage, since = self.running
            expected = TYPICAL_SECONDS.get(kind_of(stage), 2.0) * pace
            left += max(0.0, expected - (time.perf_counter() - since))
        return left

    def _render(self) -> Table:
        elapsed = time.perf_counter() - self.start
        n_done = sum(st in ("done", "cached") for st in self.state.values())
        table = Table(title=f"alignpt study: {n_done}/{len(self.stages)} stages, "
                            f"{elapsed / 60:.1f} min elapsed, about "
                            f"{self.remaining() / 60:.1f} min left", title_justify="left")
        table.add_column("stage")
        table.add_column("state")
        table.add_column("seconds", justify="right")
        # A window on the list, so that the table fits a terminal: the last stages done,
        # the running one, the next ones pending.
        done = [s for s in self.stages if self.state[s] == "done"][-3:]
        pending = [s for s in self.stages if self.state[s] == "pending"]
        running = [s for s in self.stages if self.state[s] == "running"]
        for stage in done + running + pending[:8]:
            st = self.state[stage]
            if st == "running" and self.running:
                shown = f"{time.perf_counter() - self.running[1]:.0f}"
            else:
                shown = f"{self.seconds[stage]:.1f}" if stage in self.seconds else ""
            style = {"running": "bold yellow", "done": "green", "pending": ""}[st]
            table.add_row(stage, st, shown, style=style)
        if len(pending) > 8:
            table.add_row(f"... {len(pending) - 8} more", "pending", "")
        return table
