"""The loop's counters as typed records that travel in every checkpoint, and one timer.

Pure bookkeeping: no devices, no files. A group of one point (a single run) and a vmapped group
use the same records, so resume, early stopping and the run record are written once.
"""

import contextlib
import dataclasses
import time
from typing import Any

TRAINING, FINISHED, EARLY_STOPPED, DIVERGED = "training", "finished", "early_stopped", "diverged"


@dataclasses.dataclass
class PointCounters:
    """One point's progress: its best validation so far, patience, and where it stands."""

    status: str = TRAINING  # TRAINING until the point stops: EARLY_STOPPED or DIVERGED
    best: dict[str, Any] | None = None  # {"epoch", "step", "val": metrics} of the best epoch
    bad_epochs: int = 0  # epochs since the last strict improvement
    trained_examples: int = 0
    first_loss: float | None = None  # the loss of the run's first step, for divergence
    epoch_sums: dict[str, float] | None = None  # the epoch's metric sums, for a mid-epoch save
    error: str | None = None  # why the point diverged

    @property
    def active(self) -> bool:
        return self.status == TRAINING

    def end_epoch(
        self, val: dict[str, float], target: str, mode: str, patience: int, epoch: int, step: int
    ) -> bool:
        """Records an epoch's validation metrics (0-based epoch and step); True if it is the
        best so far. Ties count as better (a later epoch with the same score has trained
        longer) but not as progress for patience."""
        best = self.best and self.best["val"][target]
        value = val[target]
        improved = best is None or (value >= best if mode == "max" else value <= best)
        if improved:
            self.best = {"epoch": epoch + 1, "step": step + 1, "val": val}
        self.bad_epochs = 0 if improved and value != best else self.bad_epochs + 1
        if patience and self.bad_epochs >= patience:
            self.status = EARLY_STOPPED
        return improved


@dataclasses.dataclass
class Counters:
    """The whole group's position: the loop's step, its timer and every point's counters."""

    step: int
    seconds: dict[str, float]  # Chrono totals: wall, train, compile
    points: list[PointCounters]

    @classmethod
    def new(cls, size: int) -> "Counters":
        return cls(0, Chrono.ZERO.copy(), [PointCounters() for _ in range(size)])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> "Counters":
        points = [PointCounters(**point) for point in saved["points"]]
        return cls(saved["step"], dict(saved["seconds"]), points)


class Chrono:
    """Wall, training and compile seconds of a run, summed over its resumed segments (as
    big_vision's Chrono): the only clock of the loop, so timing survives a resume."""

    ZERO = {"wall": 0.0, "train": 0.0, "compile": 0.0}

    def __init__(self):
        self.start = self.lap_start = time.time()
        self.before = self.ZERO.copy()  # totals of earlier segments
        self.now = self.ZERO.copy()  # this segment's train and compile seconds
        self.startup: float | None = None  # this segment's seconds before its first step

    def resume(self, saved: dict[str, float]) -> None:
        """Adds the totals a checkpoint carried from earlier segments."""
        self.before = dict(saved)

    def total(self, what: str) -> float:
        if what == "wall":
            return self.before["wall"] + time.time() - self.start
        return self.before[what] + self.now[what]

    def totals(self) -> dict[str, float]:
        return {what: self.total(what) for what in self.ZERO}

    @contextlib.contextmanager
    def measure(self, what: str):
        begin = time.time()
        try:
            yield
        finally:
            self.now[what] += time.time() - begin

    def start_training(self) -> None:
        """Marks the first step of this segment: what came before was start-up."""
        self.startup = time.time() - self.start
        self.start_lap()

    def start_lap(self) -> None:
        self.lap_start = time.time()

    def end_lap(self) -> float:
        """Seconds of training since `start_lap`, added to the training total."""
        seconds = time.time() - self.lap_start
        self.now["train"] += seconds
        return seconds
