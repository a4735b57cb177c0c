"""Optimizers and learning-rate schedules from the config, built from optax parts.

The learning rate is injected as a hyperparameter (`optax.inject_hyperparams`) so it is part of
the optimizer state: visible in logs, and stackable across sweep points.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from research.errors import UserError

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


def schedule(config: ml_collections.ConfigDict, steps_per_epoch: int, num_epochs: int, peak=None):
    """Linear warmup over `warmup_epochs`, then constant, step decay or cosine decay to 0.

    `peak` replaces config.learning_rate; it may be a traced array (the vmap executor's).
    """
    peak = config.learning_rate if peak is None else peak
    warmup = int(config.warmup_epochs * steps_per_epoch)
    total = num_epochs * steps_per_epoch
    if config.schedule == "constant":
        after = optax.constant_schedule(peak)
    elif config.schedule == "cosine":
        after = optax.cosine_decay_schedule(peak, max(total - warmup, 1))
    elif config.schedule == "step":
        boundaries = {
            int(epoch * steps_per_epoch) - warmup: config.decay_factor
            for epoch in config.decay_epochs
        }
        after = optax.piecewise_constant_schedule(peak, boundaries)
    else:
        raise UserError(
            f"optimizer.schedule={config.schedule!r} is unknown; use one of {SCHEDULES}."
        )
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


def make_optimizer(
    config: ml_collections.ConfigDict,
    steps_per_epoch: int,
    num_epochs: int,
    peak_learning_rate=None,
    momentum=None,
) -> optax.GradientTransformation:
    """The config's optimizer; `peak_learning_rate` and `momentum` replace the config's values
    (the vmap executor passes one sweep point's values as traced arrays)."""
    if config.name not in OPTIMIZERS:
        raise UserError(
            f"optimizer.name={config.name!r} is unknown; use one of {', '.join(OPTIMIZERS)}."
        )
    lr = schedule(config, steps_per_epoch, num_epochs, peak_learning_rate)
    momentum = config.momentum if momentum is None else momentum

    def build(learning_rate, weight_decay):
        if config.name == "adam":
            core = optax.adam(learning_rate)
        elif config.name == "adamw":
            core = optax.adamw(learning_rate, weight_decay=weight_decay, mask=_decay_mask)
        else:
            decay = None if config.name == "sgd" else momentum
            core = optax.sgd(learning_rate, decay, nesterov=config.name == "nesterov")
        if config.name != "adamw" and config.weight_decay:
            # Coupled L2 (added to the gradient before momentum), the classic SGD recipe.
            core = optax.chain(optax.add_decayed_weights(weight_decay, _decay_mask), core)
        if config.grad_clip_norm:
            core = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), core)
        if config.get("ema_decay"):  # absent from runs saved before it existed
            core = optax.chain(core, average_params(config.ema_decay))
        return core

    return optax.inject_hyperparams(build)(learning_rate=lr, weight_decay=config.weight_decay)
