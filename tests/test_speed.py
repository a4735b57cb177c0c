"""The CPU speed levers give the plain versions' results: LeNet's patch-matmul convolution
equals lax's to float rounding, forward and backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models.lenet import LeNet5, conv


@pytest.mark.parametrize(
    "shape, features, padding",
    [((8, 4, 4, 8), 16, "SAME"), ((8, 3, 5, 2), 4, ((1, 2), (2, 2))), ((8, 8, 8, 1), 4, "SAME")],
)
def test_conv_matches_lax_to_rounding(shape, features, padding) -> None:
    x = jax.random.normal(jax.random.key(0), shape)
    plain = nn.Conv(features, (5, 5), padding=padding)
    ours = nn.Conv(features, (5, 5), padding=padding, conv_general_dilated=conv)
    variables = plain.init(jax.random.key(1), x)
    value_and_grads = [
        jax.value_and_grad(lambda v, x, m=module: jnp.sum(jnp.sin(m.apply(v, x))), (0, 1))(
            variables, x
        )
        for module in (ours, plain)
    ]
    for a, b in zip(*map(jax.tree.leaves, value_and_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


def test_lenet_on_digits_shapes_matches_plain_layers() -> None:
    """The digits LeNet (5x5 kernels over 4x4 maps: the patch-matmul path) against the same
    network with lax's convolution: loss and gradients to 1e-5."""
    model = LeNet5(num_classes=10, features=(8, 16), dense_sizes=(32,), padding=("SAME", "SAME"))
    images = jax.random.uniform(jax.random.key(0), (16, 8, 8, 1))
    variables = model.init(jax.random.key(1), images)

    def loss(variables):
        return jnp.mean(jax.nn.log_softmax(model.apply(variables, images))[:, 0])

    ours = jax.value_and_grad(loss)(variables)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("research.models.lenet.conv", jax.lax.conv_general_dilated)
        plain = jax.value_and_grad(loss)(variables)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
