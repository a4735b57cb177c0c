"""Convolution arithmetic of the lecture: output width (W - F + 2P) / S + 1, checked against the
shapes flax's nn.Conv produces. Pure functions.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def conv_output_size(width: int, field: int, padding: int, stride: int) -> int:
    """(W - F + 2P) / S + 1, rounded down when the filter does not tile the input exactly."""
    return (width - field + 2 * padding) // stride + 1


def flax_conv_shape(
    width: int, channels: int, field: int, filters: int, padding: int, stride: int
) -> tuple[int, ...]:
    """The activation volume (height, width, filters) of nn.Conv on one square input."""
    conv = nn.Conv(filters, (field, field), strides=stride, padding=[(padding, padding)] * 2)
    images = jnp.zeros((1, width, width, channels))
    out = jax.eval_shape(lambda x: conv.init_with_output(jax.random.key(0), x)[0], images)
    return tuple(out.shape[1:])
