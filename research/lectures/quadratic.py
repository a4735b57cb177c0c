"""Gradient descent in the lecture's four learning-rate regimes, on a 1-D quadratic and on any
loss: eta_opt = 1 / J''(w), and a run that stops with "diverged at step N" instead of NaNs.
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
    the last finite parameters (to measure, say, the curvature where the run ended)."""

    losses: list[float]
    probes: list[float]
    diverged_at: int | None
    params: Any = None

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
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    eta: float,
    steps: int,
    probe: Callable[[Any], jax.Array] | None = None,
    blowup: float = 1e6,
) -> Descent:
    """w <- w - eta dJ/dw for `steps` steps, stopping once J is not finite or exceeds `blowup`
    times its start, so a diverging run ends with its step number rather than NaNs."""
    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    update = jax.jit(lambda p, g: jax.tree.map(lambda w, d: w - eta * d, p, g))
    losses, probes, last = [], [], params
    for step in range(steps + 1):
        loss, grads = value_and_grad(params)
        loss = float(loss)
        if not jnp.isfinite(loss) or (losses and loss > blowup * max(losses[0], 1e-12)):
            return Descent(losses, probes, diverged_at=step, params=last)
        losses.append(loss)
        probes.append(float(probe(params)) if probe else loss)
        last = params
        if step < steps:
            params = update(params, grads)
    return Descent(losses, probes, diverged_at=None, params=last)


def sign_changes(values: list[float]) -> int:
    """How often consecutive values change sign: the oscillation of w - w* about the minimum."""
    return sum(1 for a, b in zip(values, values[1:], strict=False) if a * b < 0)
