"""The largest Hessian eigenvalue of a loss by power iteration on Hessian-vector products
(forward-over-reverse: jax.jvp of jax.grad), never forming the Hessian. Pure functions.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def hvp(loss_fn: Callable[[Any], jax.Array], params: Any, vector: Any) -> Any:
    """H v at params, for v shaped like params: the directional derivative of the gradient."""
    return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


def top_eigenvalue(
    loss_fn: Callable[[Any], jax.Array],
    params: Any,
    key: jax.Array,
    iterations: int = 300,
    tolerance: float = 1e-6,
) -> float:
    """The eigenvalue of largest magnitude (the top one wherever the loss is locally convex
    enough, as near a minimum), by the Rayleigh quotient v.Hv of the power iterates."""
    flat, unravel = ravel_pytree(params)
    product = jax.jit(lambda v: ravel_pytree(hvp(loss_fn, params, unravel(v)))[0])
    v = jax.random.normal(key, flat.shape, flat.dtype)
    v = v / jnp.linalg.norm(v)
    eigenvalue = 0.0
    for _ in range(iterations):
        hv = product(v)
        previous, eigenvalue = eigenvalue, float(v @ hv)
        v = hv / jnp.linalg.norm(hv)
        if abs(eigenvalue - previous) <= tolerance * abs(eigenvalue):
            break
    return eigenvalue
