"""How the lecture studies train a network: the library's step builders and optimizer over batches
a study supplies, evaluated after every epoch; plus the digits arrays and a squared-error task.
No files and no checkpoints: a study keeps what it measures.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from research import data as data_lib
from research.config import base_config
from research.tasks import Aux, Batch, Task, weights
from research.train.optim import make_optimizer
from research.train.setup import build_setup
from research.train.steps import TrainState, create_state, make_eval_step, make_train_step


def digits(flat: bool = False) -> dict[str, tuple[jax.Array, jax.Array]]:
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


@dataclasses.dataclass(frozen=True)
class SquaredError:
    """`scale` sum_k (targets_k - logits_k)^2 per example on `inputs`; with scale 1/2 and one-hot
    targets it is the lecture's squared cost J on linear outputs, with scale 1 a plain MSE."""

    scale: float = 1.0
    target: str = "loss"
    mode: str = "min"

    def model_inputs(self, batch: Batch, key: jax.Array, train: bool) -> tuple[jax.Array, Aux]:
        del key, train
        return batch["inputs"], {}

    def loss_and_metrics(
        self, logits: jax.Array, batch: Batch, aux: Aux
    ) -> tuple[jax.Array, Batch]:
        del aux
        targets = batch["targets"]
        errors = self.scale * jnp.sum((targets - logits) ** 2, axis=tuple(range(1, logits.ndim)))
        w = weights(batch, targets)
        count = jnp.sum(w)
        loss_sum = jnp.sum(errors * w)
        return loss_sum / jnp.maximum(count, 1.0), {"loss": loss_sum, "count": count}


@dataclasses.dataclass(frozen=True)
class Run:
    """A finished run: the model and task, the final state, each step's training loss (before
    that step's update), and per evaluated split the task's mean metrics after each epoch."""

    model: nn.Module
    task: Task
    state: TrainState
    losses: list[float]
    curves: dict[str, list[dict[str, float]]]

    @property
    def params(self) -> Any:
        return self.state.params

    def inputs(self, batch: Batch) -> Any:
        """The model's inputs for `batch` as evaluation prepares them (normalised images)."""
        return self.task.model_inputs(batch, jax.random.key(0), train=False)[0]


def train(
    model: nn.Module,
    task: Task,
    optimizer: ml_collections.ConfigDict,
    batch_at: Callable[[int, int], Batch],
    *,
    steps_per_epoch: int,
    num_epochs: int,
    seed: int,
    evaluate_on: dict[str, Batch] | None = None,
    params: Any = None,
) -> Run:
    """Trains as the library's loop does (keys from `seed`, `make_optimizer`, `make_train_step`)
    on `batch_at(epoch, step)`, and evaluates `evaluate_on`'s whole batches after every epoch
    with `make_eval_step`: what a study needs that a run's record lacks (per-epoch test error,
    the trained parameters), without its workdir. `params` replaces the initialisation, for a
    study that measures its starting point first."""
    evaluate_on = evaluate_on or {}
    init_key, step_key = jax.random.split(jax.random.key(seed))
    tx = make_optimizer(optimizer, steps_per_epoch, num_epochs)
    example, _ = task.model_inputs(jax.tree.map(jnp.asarray, batch_at(0, 0)), init_key, False)
    state = create_state(model, tx, example, init_key)  # eagerly: compiling it costs seconds
    if params is not None:
        state = state.replace(params=params, opt_state=tx.init(params))
    train_step, eval_step = jax.jit(make_train_step(task, step_key)), jax.jit(make_eval_step(task))
    step_metrics, curves = [], {split: [] for split in evaluate_on}
    for epoch in range(num_epochs):
        for step in range(steps_per_epoch):
            state, metrics = train_step(state, batch_at(epoch, step))
            step_metrics.append(metrics)
        for split, batch in evaluate_on.items():
            sums = jax.device_get(eval_step(state, batch))
            curves[split].append(
                {k: float(v / sums["count"]) for k, v in sums.items() if k != "count"}
            )
    losses = [float(m["loss"] / m["count"]) for m in jax.device_get(step_metrics)]
    return Run(model, task, state, losses, curves)


def train_config(
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset | None = None,
    evaluate: tuple[str, ...] = (),
) -> tuple[data_lib.Dataset, Run]:
    """`train` on what `config` names (its data, task, model, optimizer, batch size, epochs and
    seed, built by `research.train.setup`), in the loop's batch order; `dataset` replaces the
    config's data (a smaller training set), and `evaluate` names the splits to follow."""
    dataset, task, model = build_setup(config, dataset)
    batch_size = config.data.batch_size
    run = train(
        model,
        task,
        config.optimizer,
        lambda epoch, step: data_lib.train_batch(dataset, config.seed, epoch, step, batch_size),
        steps_per_epoch=dataset.size("train") // batch_size,
        num_epochs=config.train.num_epochs,
        seed=config.seed,
        evaluate_on={split: dataset.splits[split] for split in evaluate},
    )
    return dataset, run
