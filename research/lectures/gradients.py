"""Per-layer gradient norms at initialisation, input layer first, for the CIFAR ResNets with and
without skip connections (the vanishing/exploding-gradient study). Pure functions.
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


def depth_order(path: str) -> tuple[int, ...]:
    """Sort key of a ResNet parameter path along the forward pass: the stem, then
    stage s / block b / conv c, then the head (flax's dicts come back sorted by name)."""
    if path.startswith("stem"):
        return (0,)
    if path.startswith("head"):
        return (2,)
    return (1, *map(int, re.findall(r"\d+", path)))


def layer_gradient_norms(
    model: nn.Module, images: jax.Array, labels: jax.Array, key: jax.Array
) -> list[float]:
    """||dJ/dW|| of every conv on the main path (shortcut projections left out), input first.

    Batch statistics are those of the batch, as in the first training step. images
    [batch, height, width, channels] float32, labels [batch] int32.
    """
    variables = model.init(key, images[:1])

    def loss(params):
        logits, _ = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            images,
            train=True,
            mutable=["batch_stats"],
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads = jax.grad(loss)(variables["params"])  # once: compiling a deep net costs more
    kernels = [
        ("/".join(str(k.key) for k in path), leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]
        if leaf.ndim == 4 and "shortcut" not in jax.tree_util.keystr(path)
    ]
    kernels.sort(key=lambda item: depth_order(item[0]))
    return [float(jnp.linalg.norm(kernel)) for _, kernel in kernels]
