"""The adding problem (Hochreiter & Schmidhuber 1997), a long-range memory task, and a vanilla
RNN or an LSTM trained on it through the library's steps (`fit.train`). No I/O.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from research.lectures import fit
from research.models import build_model

BASELINE_MSE = 1.0 / 6.0  # always answering 1.0: the variance of a sum of two U(0, 1) values


@functools.partial(jax.jit, static_argnums=(1, 2))  # one program, not one per operation
def adding_problem(key: jax.Array, batch_size: int, length: int) -> tuple[jax.Array, jax.Array]:
    """inputs [batch, length, 2] (a U(0, 1) value and a 0/1 marker per step) and targets [batch]:
    the sum of the two marked values, one marked in each half of the sequence."""
    k_values, k_first, k_second = jax.random.split(key, 3)
    half = length // 2
    values = jax.random.uniform(k_values, (batch_size, length))
    first = jax.random.randint(k_first, (batch_size,), 0, half)
    second = jax.random.randint(k_second, (batch_size,), half, length)
    steps = jnp.arange(length)
    markers = (steps == first[:, None]) | (steps == second[:, None])
    inputs = jnp.stack([values, markers.astype(jnp.float32)], axis=-1)
    return inputs, jnp.sum(values * markers, axis=1)


def train_adding(
    cell: str,
    length: int,
    optimizer: ml_collections.ConfigDict,
    *,
    steps: int,
    hidden_size: int,
    batch_size: int,
    seed: int,
) -> tuple[float, list[float]]:
    """Trains `cell` ("rnn" or "lstm") on a fresh batch per step through `fit.train`, with a
    squared-error loss; returns (held-out MSE on 1,000 sequences, training losses)."""
    model = build_model("rnn_classifier", cell=cell, hidden_size=hidden_size, num_classes=1)
    # The sequences' own keys, apart from fit.train's; the same for both cells.
    data_key, test_key = jax.random.split(jax.random.fold_in(jax.random.key(seed), length))

    def batch(key: jax.Array, size: int) -> dict[str, jax.Array]:
        inputs, targets = adding_problem(key, size, length)
        return {"inputs": inputs, "targets": targets[:, None]}

    run = fit.train(
        model,
        fit.SquaredError(),
        optimizer,
        lambda epoch, step: batch(jax.random.fold_in(data_key, step), batch_size),
        steps_per_epoch=steps,
        num_epochs=1,
        seed=seed,
        evaluate_on={"test": batch(test_key, 1000)},
    )
    return run.curves["test"][-1]["loss"], run.losses
