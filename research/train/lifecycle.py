"""How a run ends early: a stop signal (SIGTERM preemption or Ctrl-C) at any phase, and
divergence. No training logic here; the loop asks `StopSignal.check` between phases and steps.
"""

import contextlib
import math
import signal
import threading

import jax
import ml_collections

from research.errors import UserError, stop_exit_code

# The loss of an epoch (or of the steps since its start) more than this many times the loss of
# the run's first step counts as diverged, even while it is still finite: an explosion.
EXPLOSION_FACTOR = 100.0


class Preempted(Exception):
    """Raised once a stop signal has been handled (the state saved where there was one);
    the entry point prints the message and exits with `exit_code` (0 for SIGTERM)."""

    def __init__(self, message: str, exit_code: int = 0):
        super().__init__(message)
        self.exit_code = exit_code


class Diverged(UserError):
    """A point's training loss became NaN, infinite or exploded; that stretch is not saved."""

    @classmethod
    def at(
        cls,
        config: ml_collections.ConfigDict,
        epoch: int,
        steps: tuple[int, int],
        loss: float,
        first_loss: float,
        last_saved: int | None,
    ) -> "Diverged":
        """The error for epoch `epoch` whose steps `steps` (1-based, inclusive) averaged `loss`."""
        why = ""
        if math.isfinite(loss):
            why = f", over {EXPLOSION_FACTOR:g}x the loss of the first step ({first_loss:.4g})"
        saved = (
            f"the newest checkpoint, at step {last_saved}, is intact"
            if last_saved
            else "no checkpoint was saved before it"
        )
        optimizer = config.optimizer
        return cls(
            f"training diverged by step {steps[1]}: the mean training loss of epoch {epoch} "
            f"(steps {steps[0]}-{steps[1]}) is {loss}{why}. Nothing "
            f"from those steps was saved; {saved}. The likely cause is too large a step: lower "
            f"optimizer.learning_rate (now {optimizer.learning_rate:g}), or set "
            "optimizer.grad_clip_norm or optimizer.warmup_epochs, then rerun in a new workdir "
            "or with --overwrite."
        )


def has_diverged(loss: float, first_loss: float | None) -> bool:
    """NaN or infinite, or EXPLOSION_FACTOR times the first step's loss."""
    if not math.isfinite(loss):
        return True
    return first_loss is not None and first_loss > 0 and loss > EXPLOSION_FACTOR * first_loss


class StopSignal:
    """SIGTERM and SIGINT turned into a request the loop honours at its next check.

    Installed for a whole run (start-up, compile, training, test), in the main thread of a
    one-process run. Multi-process runs leave SIGTERM to JAX's preemption service, which makes
    every process agree on the step to stop at (`Checkpointer.reached_preemption`). A second
    Ctrl-C interrupts at once.
    """

    def __init__(self):
        self.received: int | None = None

    def check(self, what: str) -> None:
        """Raises Preempted, saying `what` happened to the run, if a signal has arrived."""
        if self.received is not None:
            name = signal.Signals(self.received).name
            code = stop_exit_code(self.received)
            raise Preempted(f"preempted {what} ({name}); rerun to resume", code)

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, number, frame) -> None:
        self.received = number
        if number == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        # Several processes must stop at one agreed step: JAX's preemption service picks it for
        # SIGTERM, and a Ctrl-C there keeps its default (it interrupts at once).
        signals = [signal.SIGINT, signal.SIGTERM] if jax.process_count() == 1 else []
        previous = {number: signal.signal(number, self._handle) for number in signals}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
