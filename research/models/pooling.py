"""Config choices by name, and the summaries of a sequence that the sequence classifiers share.

Pure functions only: no parameters, so a classifier's choice of summary changes no checkpoint.
"""

from typing import Any

import jax
import jax.numpy as jnp

from research.errors import UserError


def choose(key: str, value: str, options: dict[str, Any]) -> Any:
    """options[value], or a UserError naming the config key model.<key> and its choices."""
    if value not in options:
        raise UserError(
            f"Unknown {key} {value!r} in config key model.{key}. "
            f"Set --config.model.{key} to one of: {', '.join(options)}."
        )
    return options[value]


def pool(pooling: str, outputs: jax.Array, mask: jax.Array, **own: jax.Array) -> jax.Array:
    """Summary [batch, features] of outputs [batch, time, features] at real steps (mask True).

    "max" and "mean" read every real step; `own` adds a model's own summaries by name, such as
    the RNN's last state (final=...) or the Transformer's first token (cls=...). Max-pooling
    often helps short sentences, where one strong word decides the label.
    """
    real = mask[..., None]
    summaries = {
        **own,  # under jit, the summaries not chosen are never computed
        "max": jnp.max(jnp.where(real, outputs, jnp.finfo(outputs.dtype).min), axis=1),
        "mean": jnp.sum(outputs * real, axis=1) / jnp.maximum(jnp.sum(real, axis=1), 1),
    }
    return choose("pooling", pooling, summaries)
