"""Optimizers and learning-rate schedules from the config, built from optax parts.

The learning rate is injected as a hyperparameter (`optax.inject_hyperparams`) so it is part of
the optimizer state: visible in logs, and stackable across sweep points.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from research.registry import Registry

# What follows the warmup, by `optimizer.schedule`: (config, peak, steps_per_epoch, warmup,
# total steps) -> optax schedule.
SCHEDULES: Registry[Callable[..., optax.Schedule]] = Registry("schedule", "optimizer.schedule")


@SCHEDULES.register("constant")
def _constant(config, peak, steps_per_epoch, warmup, total) -> optax.Schedule:
    return optax.constant_schedule(peak)


@SCHEDULES.register("cosine")
def _cosine(config, peak, steps_per_epoch, warmup, total) -> optax.Schedule:
    return optax.cosine_decay_schedule(peak, max(total - warmup, 1))


@SCHEDULES.register("step", reads=("decay_epochs", "decay_factor"))
def _step(config, peak, steps_per_epoch, warmup, total) -> optax.Schedule:
    boundaries = {
        int(epoch * steps_per_epoch) - warmup: config.decay_factor for epoch in config.decay_epochs
    }
    return optax.piecewise_constant_schedule(peak, boundaries)


def schedule(config: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int, peak=None):
    """Linear warmup over `warmup_epochs`, then constant, step decay or cosine decay to 0.

    `peak` replaces config.learning_rate; it may be a traced array (the vmap executor's).
    """
    peak = config.learning_rate if peak is None else peak
    warmup = int(config.warmup_epochs * steps_per_epoch)
    total = num_epochs * steps_per_epoch
    after = SCHEDULES.lookup(config.schedule)(config, peak, steps_per_epoch, warmup, total)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after], [warmup])


def _decay_mask(params):
    """Weight decay applies to kernels only, never to biases or normalisation parameters."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


class ParamsAverage(NamedTuple):
    """The optimizer state of `average_params`: updates seen, and the running average."""

    count: jax.Array
    average: Any


def average_params(decay: float) -> optax.GradientTransformation:
    """Keeps an exponential moving average of the parameters after each update (Polyak
    averaging); the updates pass through unchanged, so training is the same as without it.

    At update t (from 0) the average keeps min(decay, t / (10 + t)) of itself: the first update
    replaces it, so it never remembers the initialisation (nor the init a pretrained encoder
    replaced), and its early values follow the fast-moving early parameters. Evaluation reads
    it through `evaluation_params`.
    """

    def init(params):
        return ParamsAverage(jnp.zeros([], jnp.int32), jax.tree.map(jnp.copy, params))

    def update(updates, state, params):
        rate = jnp.minimum(decay, state.count / (10.0 + state.count))
        new_params = optax.apply_updates(params, updates)
        average = jax.tree.map(lambda a, p: rate * a + (1 - rate) * p, state.average, new_params)
        return updates, ParamsAverage(state.count + 1, average)

    return optax.GradientTransformation(init, update)


def evaluation_params(params: Any, opt_state: Any) -> Any:
    """The parameters a run evaluates, samples from and hands on: the `average_params` average
    when the optimizer keeps one (optimizer.ema_decay > 0), else the trained parameters."""
    averaged = optax.tree_utils.tree_get(opt_state, "ParamsAverage")
    return params if averaged is None else averaged.average


# The optimizer proper, by `optimizer.name`: (learning_rate, weight_decay, momentum) -> optax
# transformation; make_optimizer adds coupled L2, clipping and averaging around it.
OPTIMIZERS: Registry[Callable[..., optax.GradientTransformation]] = Registry(
    "optimizer", "optimizer.name"
)


@OPTIMIZERS.register("sgd")
def _sgd(learning_rate, weight_decay, momentum) -> optax.GradientTransformation:
    return optax.sgd(learning_rate)


@OPTIMIZERS.register("momentum", reads=("momentum",))
def _momentum(learning_rate, weight_decay, momentum) -> optax.GradientTransformation:
    return optax.sgd(learning_rate, momentum)


@OPTIMIZERS.register("nesterov", reads=("momentum",))
def _nesterov(learning_rate, weight_decay, momentum) -> optax.GradientTransformation:
    return optax.sgd(learning_rate, momentum, nesterov=True)


@OPTIMIZERS.register("adam")
def _adam(learning_rate, weight_decay, momentum) -> optax.GradientTransformation:
    return optax.adam(learning_rate)


@OPTIMIZERS.register("adamw")
def _adamw(learning_rate, weight_decay, momentum) -> optax.GradientTransformation:
    return optax.adamw(learning_rate, weight_decay=weight_decay, mask=_decay_mask)


def make_optimizer(
    config: ml_collections.ConfigDict,
    steps_per_epoch: int,
    num_epochs: int,
    peak_learning_rate=None,
    momentum=None,
) -> optax.GradientTransformation:
    """The config's optimizer; `peak_learning_rate` and `momentum` replace the config's values
    (the vmap executor passes one sweep point's values as traced arrays)."""
    optimizer = OPTIMIZERS.lookup(config.name)
    lr = schedule(config, steps_per_epoch, num_epochs, peak_learning_rate)
    momentum = config.momentum if momentum is None else momentum

    def build(learning_rate, weight_decay):
        core = optimizer(learning_rate, weight_decay, momentum)
        if config.name != "adamw":
            # Coupled L2 (added to the gradient before momentum), the classic SGD recipe. Always
            # in the chain (a decay of 0 adds nothing), so the optimizer state has one structure
            # whatever the decay and points of a sweep with different decays stack.
            core = optax.chain(optax.add_decayed_weights(weight_decay, _decay_mask), core)
        if config.grad_clip_norm:
            core = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), core)
        if config.get("ema_decay"):  # absent from runs saved before it existed
            core = optax.chain(core, average_params(config.ema_decay))
        return core

    return optax.inject_hyperparams(build)(learning_rate=lr, weight_decay=config.weight_decay)
