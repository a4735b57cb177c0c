"""The CPU speed levers give the plain versions' results: LeNet's patch-matmul convolution
equals lax's to float rounding, forward and backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models.lenet import LeNet5, conv
from research.train.population import CPU_STEP_COMPILER_OPTIONS


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


def test_the_train_steps_convolutions_are_as_accurate_as_xlas_default() -> None:
    """CPU_STEP_COMPILER_OPTIONS (XLA's convolutions instead of YNNPACK's; faster) against
    the default compile, both against float64, on a ResNet-8's gradients at initialisation: in
    float32, BatchNorm over the batch leaves both about 1e-3 off (relative L2 norm of the worst
    leaf), so "as accurate" means within 2x of the default's error, not a fixed tolerance."""
    from research.models import build_model

    images = jax.random.uniform(jax.random.key(0), (32, 32, 32, 3))
    labels = jax.random.randint(jax.random.key(1), (32,), 0, 10)
    init = build_model("cifar_resnet", depth=8, width=16, num_classes=10).init
    variables = init(jax.random.key(2), images[:2], train=False)

    def gradients(dtype, compiler_options=None):
        model = build_model("cifar_resnet", depth=8, width=16, num_classes=10, dtype=dtype)
        start = jax.tree.map(lambda leaf: np.asarray(leaf, dtype), variables)

        def loss(params):
            inputs = np.asarray(images, dtype)
            logits, _ = model.apply({**start, "params": params}, inputs, train=True, mutable=True)
            log_probs = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], 1))

        return jax.jit(jax.grad(loss), compiler_options=compiler_options)(start["params"])

    ours, plain = gradients(np.float32, CPU_STEP_COMPILER_OPTIONS), gradients(np.float32)
    jax.config.update("jax_enable_x64", True)
    try:
        reference = gradients(np.float64)
        assert all(leaf.dtype == np.float64 for leaf in jax.tree.leaves(reference))
    finally:
        jax.config.update("jax_enable_x64", False)

    def error(grads):
        pairs = zip(jax.tree.leaves(grads), jax.tree.leaves(reference), strict=True)
        return max(float(np.linalg.norm(g - r) / np.linalg.norm(r)) for g, r in pairs)

    assert error(ours) <= max(2 * error(plain), 1e-5) and error(plain) < 1e-2


def test_a_cpu_population_compiles_its_steps_with_xlas_convolutions(make_config) -> None:
    """A population on CPU carries CPU_STEP_COMPILER_OPTIONS, with which the loop compiles its
    train steps: YNNPACK fusions remain for matmuls only."""
    from research.train import sharding
    from research.train.population import build_population
    from research.train.setup import build_setup

    config = make_config("digits_resnet")
    mesh = sharding.make_mesh(config.mesh)
    with jax.set_mesh(mesh):
        dataset, task, model = build_setup(config)
        population, state = build_population([config], dataset, task, model, mesh, False)
        batch, active = population.batch_at(0, 0), jnp.ones(1, bool)
        lowered = population.train_step.lower(state, active, batch)
        text = lowered.compile(population.compiler_options).as_text()
    assert population.compiler_options == CPU_STEP_COMPILER_OPTIONS
    fused = [line for line in text.splitlines() if "__ynn_fusion" in line and "op_name" in line]
    assert fused and not [line for line in fused if "conv_general_dilated" in line]
