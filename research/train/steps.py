"""The train state and the pure step functions the loop compiles once with `jax.jit`.

No I/O and no hidden randomness: the step's keys are `fold_in(root, step)`.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from research.tasks import Batch, Task
from research.train.optim import evaluation_params


class TrainState(train_state.TrainState):
    """Flax's TrainState plus BatchNorm statistics (an empty dict for models without BN)."""

    batch_stats: Any = flax.struct.field(default_factory=dict)


def create_state(
    model: nn.Module, tx: optax.GradientTransformation, example_inputs: jnp.ndarray, key
) -> TrainState:
    variables = model.init({"params": key, "dropout": key}, example_inputs, train=False)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
    )


def make_train_step(task: Task, root_key: jax.Array):
    """Returns `train_step(state, batch) -> (state, metric sums)`."""

    def train_step(state: TrainState, batch: Batch):
        step_key = jax.random.fold_in(root_key, state.step)
        augment_key, dropout_key = jax.random.split(step_key)
        inputs = task.model_inputs(batch, augment_key, train=True)

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}
            logits, updates = state.apply_fn(
                variables,
                inputs,
                train=True,
                rngs={"dropout": dropout_key},
                mutable=["batch_stats"],
            )
            loss, metrics = task.loss_and_metrics(logits, batch)
            return loss, (metrics, updates.get("batch_stats", {}))

        grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics

    return train_step


def make_eval_step(task: Task):
    """Returns `eval_step(state, batch) -> metric sums` over the (masked) batch."""

    def eval_step(state: TrainState, batch: Batch):
        inputs = task.model_inputs(batch, jax.random.key(0), train=False)
        params = evaluation_params(state.params, state.opt_state)
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits = state.apply_fn(variables, inputs, train=False)
        return task.loss_and_metrics(logits, batch)[1]

    return eval_step
