"""The adding problem (Hochreiter & Schmidhuber 1997), a long-range memory task, and a small
trainer for a vanilla RNN or an LSTM on it. Pure functions except the trainer's own state.
"""

import jax
import jax.numpy as jnp

from research.lectures.fit import Trainer
from research.models import build_model

BASELINE_MSE = 1.0 / 6.0  # always answering 1.0: the variance of a sum of two U(0, 1) values


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
    *,
    steps: int,
    hidden_size: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> tuple[float, list[float]]:
    """Trains `cell` ("rnn" or "lstm") on fresh batches; returns (held-out MSE, train losses)."""
    model = build_model("rnn_classifier", cell=cell, hidden_size=hidden_size, num_classes=1)
    root = jax.random.key(seed)
    init_key, data_key, test_key = jax.random.split(root, 3)
    params = model.init(init_key, jnp.zeros((1, length, 2)))["params"]

    def mse(params, batch):
        inputs, targets = batch
        return jnp.mean((model.apply({"params": params}, inputs)[:, 0] - targets) ** 2)

    trainer = Trainer(mse, params, learning_rate, clip_norm=1.0)
    batches = (
        adding_problem(jax.random.fold_in(data_key, step), batch_size, length)
        for step in range(steps)
    )
    losses = trainer.run(batches)
    test_mse = float(jax.jit(mse)(trainer.params, adding_problem(test_key, 1000, length)))
    return test_mse, losses
