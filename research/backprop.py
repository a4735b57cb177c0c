"""The lecture's three-layer network trained by hand-written backpropagation, in its notation.

Pure functions, no I/O, no autodiff (only `train` reads the clock), so the gradients built from
the sensitivities delta_k and delta_j can be checked against jax.grad.
"""

import functools
import math
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array


class Params(NamedTuple):
    """Network weights; a pytree, so jax.grad of a criterion returns this same structure.

    Indices: i inputs, j hidden units, k outputs. Data are batches of n patterns, rows of
    x [n, n_in], with one-hot targets t [n, n_out].
    """

    w_ji: Array  # [n_in, n_hidden]: input i -> hidden j
    w_j0: Array  # [n_hidden]: hidden bias
    w_kj: Array  # [n_hidden, n_out]: hidden j -> output k
    w_k0: Array  # [n_out]: output bias


class Activation(NamedTuple):
    """A nonlinearity f and its derivative f', both as functions of the net activation."""

    f: Callable[[Array], Array]
    f_prime: Callable[[Array], Array]


def _sigmoid(net: Array) -> Array:
    # Equals 1 / (1 + exp(-net)); the tanh form never overflows.
    return 0.5 * (1.0 + jnp.tanh(0.5 * net))


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(_sigmoid, lambda net: _sigmoid(net) * (1.0 - _sigmoid(net))),
    "tanh": Activation(jnp.tanh, lambda net: 1.0 - jnp.tanh(net) ** 2),
    "relu": Activation(
        lambda net: jnp.where(net > 0, net, 0.0), lambda net: (net > 0).astype(net.dtype)
    ),
}
COSTS = ("squared", "cross_entropy")


class Forward(NamedTuple):
    """Every quantity of one forward pass; backpropagation needs all of them."""

    net_j: Array  # [n, n_hidden]
    y_j: Array  # [n, n_hidden]: hidden outputs f(net_j)
    net_k: Array  # [n, n_out]
    z_k: Array  # [n, n_out]: f(net_k) for the squared cost, softmax(net_k) for cross-entropy


def init(key: Array, n_in: int, n_hidden: int, n_out: int) -> Params:
    """Uniform in +-1/sqrt(fan_in), so every net activation starts of order one."""
    k_ji, k_j0, k_kj, k_k0 = jax.random.split(key, 4)
    a, b = 1.0 / math.sqrt(n_in), 1.0 / math.sqrt(n_hidden)
    return Params(
        w_ji=jax.random.uniform(k_ji, (n_in, n_hidden), minval=-a, maxval=a),
        w_j0=jax.random.uniform(k_j0, (n_hidden,), minval=-a, maxval=a),
        w_kj=jax.random.uniform(k_kj, (n_hidden, n_out), minval=-b, maxval=b),
        w_k0=jax.random.uniform(k_k0, (n_out,), minval=-b, maxval=b),
    )


def forward(params: Params, x: Array, activation: str, cost: str) -> Forward:
    """net_j = sum_i x_i w_ji + w_j0, y_j = f(net_j), net_k = sum_j y_j w_kj + w_k0, z_k."""
    f = ACTIVATIONS[activation].f
    net_j = x @ params.w_ji + params.w_j0
    y_j = f(net_j)
    net_k = y_j @ params.w_kj + params.w_k0
    z_k = f(net_k) if cost == "squared" else jax.nn.softmax(net_k, axis=-1)
    return Forward(net_j, y_j, net_k, z_k)


def criterion(params: Params, x: Array, t: Array, activation: str, cost: str) -> Array:
    """J(w), the mean over the n patterns of 1/2 sum_k (t_k - z_k)^2 or of -sum_k t_k ln z_k."""
    fwd = forward(params, x, activation, cost)
    if cost == "squared":
        per_pattern = 0.5 * jnp.sum((t - fwd.z_k) ** 2, axis=-1)
    else:
        per_pattern = -jnp.sum(t * jax.nn.log_softmax(fwd.net_k, axis=-1), axis=-1)
    return jnp.mean(per_pattern)


def error_rate(params: Params, x: Array, t: Array, activation: str, cost: str) -> Array:
    """Fraction of patterns whose largest output z_k is not the target class argmax t."""
    z_k = forward(params, x, activation, cost).z_k
    return jnp.mean(jnp.argmax(z_k, axis=-1) != jnp.argmax(t, axis=-1))


def sensitivities(
    params: Params, x: Array, t: Array, activation: str, cost: str
) -> tuple[Forward, Array, Array]:
    """The forward pass, delta_j [n, n_hidden] and delta_k [n, n_out], i.e. -dJ_p/dnet.

    delta_k = (t_k - z_k) f'(net_k) for the squared cost and t_k - z_k for softmax with
    cross-entropy (which needs sum_k t_k = 1); delta_j = f'(net_j) sum_k w_kj delta_k.
    """
    f_prime = ACTIVATIONS[activation].f_prime
    fwd = forward(params, x, activation, cost)
    delta_k = t - fwd.z_k
    if cost == "squared":
        delta_k = delta_k * f_prime(fwd.net_k)
    delta_j = f_prime(fwd.net_j) * (delta_k @ params.w_kj.T)
    return fwd, delta_j, delta_k


def weight_changes(
    params: Params, x: Array, t: Array, eta: float | Array, activation: str, cost: str
) -> Params:
    """Delta w_kj = eta delta_k y_j and Delta w_ji = eta delta_j x_i (bias inputs are 1).

    Averaged over the n patterns, matching J's mean, so the update is Delta w = -eta dJ/dw.
    """
    fwd, delta_j, delta_k = sensitivities(params, x, t, activation, cost)
    n = x.shape[0]
    return Params(
        w_ji=eta * (x.T @ delta_j) / n,
        w_j0=eta * jnp.mean(delta_j, axis=0),
        w_kj=eta * (fwd.y_j.T @ delta_k) / n,
        w_k0=eta * jnp.mean(delta_k, axis=0),
    )


def gradient(params: Params, x: Array, t: Array, activation: str, cost: str) -> Params:
    """dJ/dw = -Delta w / eta, as a Params pytree comparable with jax.grad(criterion)."""
    changes = weight_changes(params, x, t, 1.0, activation, cost)
    return jax.tree.map(jnp.negative, changes)


def _update(
    params: Params, x: Array, t: Array, eta: float | Array, activation: str, cost: str
) -> Params:
    changes = weight_changes(params, x, t, eta, activation, cost)
    return jax.tree.map(jnp.add, params, changes)


_jit_epoch = functools.partial(jax.jit, static_argnames=("activation", "cost"))


@_jit_epoch
def batch_epoch(
    params: Params, x: Array, t: Array, eta: float, key: Array, *, activation: str, cost: str
) -> Params:
    """Present all n patterns, then make one update from their averaged changes (key unused)."""
    return _update(params, x, t, eta, activation, cost)


def stochastic_order(key: Array, n: int) -> Array:
    """The n pattern indices [n] one stochastic epoch visits, drawn with replacement."""
    return jax.random.randint(key, (n,), 0, n)


@_jit_epoch
def stochastic_epoch(
    params: Params, x: Array, t: Array, eta: float, key: Array, *, activation: str, cost: str
) -> Params:
    """n updates, each from one pattern chosen at random (`stochastic_order(key, n)`)."""

    def step(w: Params, m: Array) -> tuple[Params, None]:
        x_m = jax.lax.dynamic_slice_in_dim(x, m, 1)
        t_m = jax.lax.dynamic_slice_in_dim(t, m, 1)
        return _update(w, x_m, t_m, eta, activation, cost), None

    params, _ = jax.lax.scan(step, params, stochastic_order(key, x.shape[0]))
    return params


@_jit_epoch
def online_epoch(
    params: Params, x: Array, t: Array, eta: float, key: Array, *, activation: str, cost: str
) -> Params:
    """n updates, one per pattern in order; each step sees only its own pattern (key unused)."""

    def step(w: Params, pattern: tuple[Array, Array]) -> tuple[Params, None]:
        x_m, t_m = pattern
        return _update(w, x_m[None], t_m[None], eta, activation, cost), None

    params, _ = jax.lax.scan(step, params, (x, t))
    return params


PROTOCOLS: dict[str, Callable[..., Params]] = {
    "batch": batch_epoch,
    "stochastic": stochastic_epoch,
    "online": online_epoch,
}


def updates_per_epoch(protocol: str, n: int) -> int:
    """Weight updates one epoch over n patterns makes: 1 for batch, n otherwise."""
    return 1 if protocol == "batch" else n


def threshold_reached(j_before: float, j_after: float, theta: float) -> bool:
    """The threshold rule: stop once an epoch changes J by less than theta."""
    return abs(j_before - j_after) < theta


class ValidationMinimum(NamedTuple):
    """State of the validation rule: the best params so far and when they were seen."""

    params: Params
    error: float
    epoch: int


def track_validation(
    best: ValidationMinimum | None, params: Params, error: float, epoch: int
) -> ValidationMinimum:
    """Keep `params` if their validation error is strictly below the best so far."""
    if best is None or error < best.error:
        return ValidationMinimum(params, error, epoch)
    return best


class EpochRecord(NamedTuple):
    """One row of the training history, measured after the epoch's updates."""

    epoch: int  # 1-based
    cost: float  # J on the training set
    train_error: float
    val_error: float  # nan without a validation set
    presentations: int  # patterns presented so far
    updates: int  # weight updates so far
    time: float  # wall seconds since training started (the first epoch includes compilation)


_criterion = jax.jit(criterion, static_argnames=("activation", "cost"))
_error_rate = jax.jit(error_rate, static_argnames=("activation", "cost"))


def train(
    params: Params,
    x: Array,
    t: Array,
    *,
    eta: float,
    key: Array,
    protocol: str = "batch",
    activation: str = "sigmoid",
    cost: str = "squared",
    max_epochs: int = 100,
    theta: float | None = None,
    x_val: Array | None = None,
    t_val: Array | None = None,
    patience: int | None = None,
) -> tuple[Params, list[EpochRecord]]:
    """Run epochs of `protocol` until a stopping rule fires or `max_epochs` pass.

    With theta, stop once |J(m) - J(m-1)| < theta. With a validation set (x_val, t_val), the
    params returned are those of the epoch with the lowest validation error; with patience too,
    stop after that many epochs without improvement. Epoch m draws its stochastic order with
    fold_in(key, m), so runs are reproducible.
    """
    if protocol not in PROTOCOLS or activation not in ACTIVATIONS or cost not in COSTS:
        raise ValueError(
            f"unknown protocol/activation/cost {protocol!r}/{activation!r}/{cost!r}; choose from "
            f"{list(PROTOCOLS)}, {list(ACTIVATIONS)}, {list(COSTS)}"
        )
    if patience is not None and x_val is None:
        raise ValueError("patience needs a validation set: pass x_val and t_val")
    epoch_fn = PROTOCOLS[protocol]
    n = x.shape[0]
    j_before = float(_criterion(params, x, t, activation, cost))
    best = None
    history = []
    start = time.perf_counter()
    for m in range(1, max_epochs + 1):
        params = epoch_fn(
            params, x, t, eta, jax.random.fold_in(key, m), activation=activation, cost=cost
        )
        j = float(_criterion(params, x, t, activation, cost))
        val_error = math.nan
        if x_val is not None:
            val_error = float(_error_rate(params, x_val, t_val, activation, cost))
            best = track_validation(best, params, val_error, m)
        history.append(
            EpochRecord(
                epoch=m,
                cost=j,
                train_error=float(_error_rate(params, x, t, activation, cost)),
                val_error=val_error,
                presentations=m * n,
                updates=m * updates_per_epoch(protocol, n),
                time=time.perf_counter() - start,
            )
        )
        if theta is not None and threshold_reached(j_before, j, theta):
            break
        if patience is not None and m - best.epoch >= patience:
            break
        j_before = j
    return (params if best is None else best.params), history
