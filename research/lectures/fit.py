"""A small optax trainer and digits helpers for the studies that train outside the main loop
(they need per-epoch test error, Hessians or custom losses); pure except for its own state.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from research import data as data_lib
from research.config import base_config

Batch = tuple[jax.Array, jax.Array]
LossFn = Callable[[Any, Batch], jax.Array]


class Trainer:
    """Holds params and optimizer state; `run(batches)` takes one jitted step per batch."""

    def __init__(
        self,
        loss_fn: LossFn,
        params: Any,
        learning_rate: float,
        optimizer: str = "adam",
        clip_norm: float | None = None,
    ):
        tx = {"adam": optax.adam, "sgd": optax.sgd}[optimizer](learning_rate)
        if clip_norm is not None:  # recurrent nets: one exploding step should not end the run
            tx = optax.chain(optax.clip_by_global_norm(clip_norm), tx)
        self.params = params
        self.opt_state = tx.init(params)

        def step(params, opt_state, batch):
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self._step = jax.jit(step)

    def run(self, batches: Iterable[Batch]) -> list[float]:
        losses = []
        for batch in batches:
            self.params, self.opt_state, loss = self._step(self.params, self.opt_state, batch)
            losses.append(loss)
        return [float(loss) for loss in losses]


def digits(flat: bool = False) -> dict[str, Batch]:
    """The project's digits splits {train, val, test}: (images, labels) normalised by the
    training mean and std; images [n, 8, 8, 1] float32, or [n, 64] with `flat`."""
    dataset = data_lib.load(base_config("digits").data)
    mean, std = dataset.info["mean"][0], dataset.info["std"][0]
    splits = {}
    for split, arrays in dataset.splits.items():
        images = (arrays["image"].astype(np.float32) - mean) / std
        if flat:
            images = images.reshape(len(images), -1)
        splits[split] = (jnp.asarray(images), jnp.asarray(arrays["label"]))
    return splits


def epoch_batches(data: Batch, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
    """One epoch of shuffled minibatches, a function of (seed, epoch); the last partial dropped."""
    x, y = data
    order = np.random.default_rng([seed, epoch]).permutation(len(x))
    for start in range(0, len(x) - batch_size + 1, batch_size):
        rows = order[start : start + batch_size]
        yield x[rows], y[rows]


def cross_entropy(model: nn.Module) -> LossFn:
    """Mean softmax cross-entropy of a model without batch statistics or dropout."""

    def loss(params: Any, batch: Batch) -> jax.Array:
        x, y = batch
        logits = model.apply({"params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return loss


def error_rate(model: nn.Module, params: Any, data: Batch) -> float:
    """Fraction of misclassified examples."""
    x, y = data
    logits = model.apply({"params": params}, x)
    return float(jnp.mean(jnp.argmax(logits, -1) != y))
