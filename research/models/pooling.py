"""The summaries of a sequence that the sequence classifiers share.

Pure functions only: no parameters, so a classifier's choice of summary changes no checkpoint.
"""

import jax
import jax.numpy as jnp

from research.models import choose


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
