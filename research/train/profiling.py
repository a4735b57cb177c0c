"""Profiler traces of chosen training steps (`train.profile_steps`, `--profile_steps`)."""

import pathlib
from collections.abc import Sequence
from typing import Any

import jax


class Trace:
    """A `jax.profiler` trace of the steps [start, end) of `train.profile_steps` into
    `directory` (view with `tensorboard --logdir DIR` and its profile plugin, or xprof). It
    only observes: the run's numbers are the same with and without it."""

    def __init__(self, steps: Sequence[int], directory: pathlib.Path):
        self.steps, self.directory, self.tracing = tuple(steps), directory, False

    def at(self, step: int, state: Any) -> None:
        """Starts or stops the trace before `step` runs; waits for the work in flight, so the
        trace holds exactly these steps."""
        if not self.steps or self.tracing == (self.steps[0] <= step < self.steps[1]):
            return
        jax.block_until_ready(state)
        if self.tracing:
            self.stop()
        else:
            jax.profiler.start_trace(str(self.directory))
            self.tracing = True

    def stop(self) -> None:
        if self.tracing:
            jax.profiler.stop_trace()
            self.tracing = False
