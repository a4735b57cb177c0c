"""LeNet-5 after LeCun et al. (1998): conv 5x5 -> pool -> conv 5x5 -> pool -> dense -> dense -> out.

The softmax of the paper's output is applied by the loss; this module returns logits.
"""

import itertools
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from research.checks import FRACTION, Check, integer, one_of, tuple_of
from research.models import DTYPE, MODELS
from research.models.mlp import ACTIVATIONS


def conv(x: jnp.ndarray, kernel: jnp.ndarray, strides, padding, **options) -> jnp.ndarray:
    """`lax.conv_general_dilated` as nn.Conv calls it (NHWC, HWIO, stride 1), except that a
    kernel larger than its input (5x5 over the 4x4 maps of 8x8 digits) is one matmul over the
    input's patches: XLA's CPU backend swaps batch and features in such a convolution and runs
    it, forward and backward, about 7x slower."""
    height, width, channels, features = kernel.shape
    if x.shape[1] >= height and x.shape[2] >= width:
        return lax.conv_general_dilated(x, kernel, strides, padding, **options)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(x.shape[1:3], (height, width), strides, padding)
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    rows, cols = x.shape[1] - height + 1, x.shape[2] - width + 1
    shifts = itertools.product(range(height), range(width))
    patches = jnp.concatenate([x[:, i : i + rows, j : j + cols] for i, j in shifts], axis=-1)
    return patches @ kernel.reshape(height * width * channels, features)


@MODELS.register("lenet")
class LeNet5(nn.Module):
    """C1 (6 maps) -> S2 -> C3 (16 maps) -> S4 -> F5 (120) -> F6 (84) -> output.

    On 28x28 MNIST the first conv pads to keep 28x28 (the paper's 32x32 input) and the second
    is valid, giving 5x5x16 = 400 features; `padding="SAME"` for both fits tiny 8x8 digits.
    `pool` is "max" (modern) or "avg" (the paper's subsampling).
    """

    num_classes: int = 10
    features: tuple[int, int] = (6, 16)
    dense_sizes: tuple[int, int] = (120, 84)
    padding: tuple[str, str] = ("SAME", "VALID")
    pool: str = "max"
    activation: str = "relu"
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    checks: ClassVar[dict[str, Check]] = {
        "features": tuple_of(integer(1), length=2),  # C1 and C3
        "dense_sizes": tuple_of(integer(1)),
        "padding": tuple_of(one_of("SAME", "VALID"), length=2),  # of C1 and C3
        "pool": one_of("max", "avg"),
        "activation": one_of(*ACTIVATIONS),
        "dropout_rate": FRACTION,
        "dtype": DTYPE,
    }

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        f = ACTIVATIONS[self.activation]
        pool = nn.max_pool if self.pool == "max" else nn.avg_pool
        x = images.astype(self.dtype)
        for features, padding in zip(self.features, self.padding, strict=True):
            x = nn.Conv(
                features, (5, 5), padding=padding, dtype=self.dtype, conv_general_dilated=conv
            )(x)
            x = f(x)
            x = pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for width in self.dense_sizes:
            x = f(nn.Dense(width, dtype=self.dtype)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
