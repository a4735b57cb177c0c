"""Gradient descent in the lecture's four learning-rate regimes on a 1-D quadratic:
eta_opt = 1 / J''(w), and a record of any descent that ends with "diverged at step N" instead
of NaNs (a network's descent runs through the library's steps, `research.lectures.fit`).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# Multiples of eta_opt that show the regimes: slow, one step, oscillating, diverging.
REGIMES = {"slow": 0.5, "optimal": 1.0, "oscillating": 1.5, "diverging": 2.5}


@dataclasses.dataclass(frozen=True)
class Descent:
    """Loss before each step (index 0 is the start), a probed scalar per step, divergence, and
    the final parameters of a run that did not diverge (to measure the curvature there)."""

    losses: list[float]
    probes: list[float]
    diverged_at: int | None
    params: Any = None

    @classmethod
    def of(
        cls, losses: list[float], probes: list[float], params: Any, blowup: float = 1e6
    ) -> "Descent":
        """The run cut at its first loss that is not finite or exceeds `blowup` times the
        starting loss: there it diverged, and what follows is overflow."""
        limit = blowup * max(losses[0], 1e-12)
        cut = next((i for i, loss in enumerate(losses) if not loss <= limit), None)  # or NaN
        if cut is None:
            return cls(losses, probes, diverged_at=None, params=params)
        return cls(losses[:cut], probes[:cut], diverged_at=cut)

    @property
    def status(self) -> str:
        if self.diverged_at is None:
            return f"finite after {len(self.losses) - 1} steps"
        return f"diverged at step {self.diverged_at}"


def quadratic(curvature: float, minimum: float = 0.0) -> Callable[[jax.Array], jax.Array]:
    """J(w) = curvature / 2 (w - minimum)^2, whose J'' is `curvature` everywhere."""
    return lambda w: 0.5 * curvature * (w - minimum) ** 2


def eta_opt(loss_fn: Callable[[jax.Array], jax.Array], w: float) -> float:
    """1 / J''(w): the step that lands on the minimum of the local quadratic model."""
    return 1.0 / float(jax.grad(jax.grad(loss_fn))(jnp.float32(w)))


def gradient_descent(
    loss_fn: Callable[[jax.Array], jax.Array],
    w: jax.Array,
    eta: float,
    steps: int,
    probe: Callable[[jax.Array], jax.Array] | None = None,
) -> Descent:
    """w <- w - eta dJ/dw for `steps` steps on the lecture's 1-D examples."""
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    losses, probes = [], []
    for step in range(steps + 1):
        loss, grad = value_and_grad(w)
        losses.append(float(loss))
        probes.append(float(probe(w)) if probe else float(loss))
        if step < steps:
            w = w - eta * grad
    return Descent.of(losses, probes, w)


def sign_changes(values: list[float]) -> int:
    """How often consecutive values change sign: the oscillation of w - w* about the minimum."""
    return sum(1 for a, b in zip(values, values[1:], strict=False) if a * b < 0)
