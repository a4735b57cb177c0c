"""The lecture's 3-layer network: input, one hidden layer with bias units, output."""

from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from research.checks import FRACTION, Check, integer, one_of, tuple_of
from research.models import DTYPE, MODELS

ACTIVATIONS = {"sigmoid": nn.sigmoid, "tanh": jnp.tanh, "relu": nn.relu}


@MODELS.register("mlp")
class MLP(nn.Module):
    """net_j = sum_i x_i w_ji + w_j0, y_j = f(net_j), net_k = sum_j y_j w_kj + w_k0 (logits).

    Inputs of any shape are flattened; `hidden_sizes` with more than one entry gives a deeper
    network of the same form.
    """

    num_classes: int = 10
    hidden_sizes: tuple[int, ...] = (64,)
    activation: str = "tanh"
    dropout_rate: float = 0.0
    dtype: Any = jnp.float32

    checks: ClassVar[dict[str, Check]] = {
        "hidden_sizes": tuple_of(integer(1)),
        "activation": one_of(*ACTIVATIONS),
        "dropout_rate": FRACTION,
        "dtype": DTYPE,
    }

    @nn.compact
    def __call__(self, inputs: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        f = ACTIVATIONS[self.activation]
        x = inputs.reshape(inputs.shape[0], -1).astype(self.dtype)
        for width in self.hidden_sizes:
            x = f(nn.Dense(width, dtype=self.dtype)(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
