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

from research.errors import UserError
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


def adversarial(gradients: Any, epsilon: float) -> Any:
    """The worst-case perturbation of L2 norm `epsilon` per example, to first order: each
    gradient [batch, ...] scaled to that norm over all its non-batch axes."""

    def scale(g):
        norm = jnp.sqrt(jnp.sum(g**2, axis=tuple(range(1, g.ndim)), keepdims=True))
        return epsilon * g / jnp.maximum(norm, 1e-12)

    return jax.tree.map(scale, jax.lax.stop_gradient(gradients))


def micro_batches(tree: Any, count: int) -> Any:
    """Every leaf [batch, ...] as [count, batch / count, ...]: micro-batch i holds rows i,
    i + count, i + 2 count, ..., so each spans every data-parallel device's rows."""

    def split(leaf):
        strided = leaf.reshape(leaf.shape[0] // count, count, *leaf.shape[1:])
        return jnp.swapaxes(strided, 0, 1)

    return jax.tree.map(split, tree)


def make_train_step(
    task: Task, root_key: jax.Array, adversarial_epsilon: float = 0.0, grad_accum_steps: int = 1
):
    """Returns `train_step(state, batch) -> (state, metric sums)`.

    With `adversarial_epsilon` > 0 it minimises L(x) + L(x + r_adv) (adversarial training,
    Goodfellow et al. 2015, on embeddings as in Miyato et al. 2017): r_adv is `adversarial` of
    the loss gradient at every value the model marks as perturbable (its token embeddings,
    `research.models.embeddings`), so a step costs two forward and backward passes. Metrics
    are the clean loss's.

    With `grad_accum_steps` K > 1 the batch's gradient is the mean of K micro-batches' (a
    `lax.scan`, so one micro-batch's activations are in memory at a time): the same update as
    the whole batch, to rounding, for a loss that is a mean over examples. Inputs are drawn
    (augmented, masked) for the whole batch first; dropout draws per micro-batch; BatchNorm
    normalises each micro-batch by its own statistics and updates its averages K times.
    """

    def train_step(state: TrainState, batch: Batch):
        step_key = jax.random.fold_in(root_key, state.step)
        augment_key, dropout_key = jax.random.split(step_key)
        inputs, aux = task.model_inputs(batch, augment_key, train=True)

        def gradients(batch_stats, data, key):
            """(gradients, metric sums, BatchNorm statistics) of one (micro-)batch."""
            batch, inputs, aux = data

            def loss_fn(params, perturbations):
                variables = {"params": params, "batch_stats": batch_stats, **perturbations}
                logits, updates = state.apply_fn(
                    variables, inputs, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
                )
                loss, metrics = task.loss_and_metrics(logits, batch, aux)
                return loss, (metrics, updates.get("batch_stats", {}))

            grad_fn = jax.grad(loss_fn, argnums=(0, 1), has_aux=True)
            zeros = {}  # no perturbation: the model's `perturb` calls are no-ops
            if adversarial_epsilon:
                zeros = jax.tree.map(jnp.zeros_like, perturbation_shapes(state, inputs))
            (grads, input_grads), (metrics, batch_stats) = grad_fn(state.params, zeros)
            if adversarial_epsilon:
                attack = adversarial(input_grads["perturbations"], adversarial_epsilon)
                (adversarial_grads, _), _ = grad_fn(state.params, {"perturbations": attack})
                grads = jax.tree.map(jnp.add, grads, adversarial_grads)
            return grads, metrics, batch_stats

        data = (batch, inputs, aux)
        if grad_accum_steps == 1:
            grads, metrics, batch_stats = gradients(state.batch_stats, data, dropout_key)
        else:
            micro = micro_batches(data, grad_accum_steps)

            def accumulate(carry, step):
                index, one = step
                key = jax.random.fold_in(dropout_key, index)
                grads, metrics, batch_stats = gradients(carry[2], one, key)
                return (*jax.tree.map(jnp.add, carry[:2], (grads, metrics)), batch_stats), None

            first = jax.tree.map(lambda leaf: leaf[0], micro)
            shapes = jax.eval_shape(gradients, state.batch_stats, first, dropout_key)[:2]
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            steps = (jnp.arange(grad_accum_steps), micro)
            (grads, metrics, batch_stats), _ = jax.lax.scan(
                accumulate, (*zeros, state.batch_stats), steps
            )
            grads = jax.tree.map(lambda g: g / grad_accum_steps, grads)
        return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics

    return train_step


def perturbation_shapes(state: TrainState, inputs: Any) -> dict:
    """{"perturbations": shapes of the values the model marks with `Module.perturb`}; traced
    only, so it costs no compute."""

    def perturbations(params):
        variables = {"params": params, "batch_stats": state.batch_stats}
        _, marked = state.apply_fn(variables, inputs, mutable=["perturbations"])
        return marked

    marked = jax.eval_shape(perturbations, state.params)
    if not marked:
        raise UserError(
            "train.adversarial_epsilon > 0 perturbs a model's token embeddings, but this "
            "model has none (it reads no tokens). Use a model with token embeddings "
            "(rnn_classifier, transformer_classifier, rnn_lm, ...) or set "
            "--config.train.adversarial_epsilon=0."
        )
    return marked


def make_eval_step(task: Task):
    """Returns `eval_step(state, batch) -> metric sums` over the (masked) batch.

    Its key is fixed, so whatever a task draws for evaluation (the masked-LM's masks) is the
    same every epoch and validation curves are comparable.
    """

    def eval_step(state: TrainState, batch: Batch):
        inputs, aux = task.model_inputs(batch, jax.random.key(0), train=False)
        params = evaluation_params(state.params, state.opt_state)
        variables = {"params": params, "batch_stats": state.batch_stats}
        logits = state.apply_fn(variables, inputs, train=False)
        return task.loss_and_metrics(logits, batch, aux)[1]

    return eval_step
