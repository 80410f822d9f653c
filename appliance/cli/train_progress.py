"""Training progress on the terminal: a bar with the loss, or a line every few steps."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainProgressBar:
    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps  loss {task.fields[loss]}  {task.fields[rate]} s/step"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task("train", total=0, loss="-", rate="-")

    def start(self, total: int, done: int) -> None:
        self._bar.update(self._task, total=total, completed=done)
        self._bar.start()

    def step(self, step: int, loss: float | None, seconds: float) -> None:
        shown = f"{loss:.4f}" if loss is not None else "-"
        self._bar.update(self._task, completed=step, loss=shown, rate=f"{seconds:.2f}")

    def finish(self) -> None:
        self._bar.stop()


class LineTrainProgress:
    """For logs and pipes: about twenty lines per run on stderr (none when quiet)."""

    def __init__(self, quiet: bool = False) -> None:
        self._quiet = quiet
        self._every = 1
        self._total = 0

    def start(self, total: int, done: int) -> None:
        self._total = total
        self._every = max(1, total // 20)
        if done and not self._quiet:
            typer.echo(f"resuming at step {done}/{total}", err=True)

    def step(self, step: int, loss: float | None, seconds: float) -> None:
        if self._quiet or (step % self._every and step != self._total):
            return
        shown = f"{loss:.4f}" if loss is not None else "-"
        typer.echo(f"step {step}/{self._total}  loss {shown}  {seconds:.2f} s/step", err=True)

    def finish(self) -> None:
        return None
