"""Hand-written backpropagation: gradients against jax.grad, protocols, stopping rules, digits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits

from research import backprop as bp

COMBOS = [(a, c) for a in bp.ACTIVATIONS for c in bp.COSTS]


@pytest.fixture
def x64():
    """float64 for this test only, so comparisons can be tight."""
    with jax.enable_x64(True):
        yield


def _toy(key: jax.Array, n: int = 8, n_in: int = 5, n_hidden: int = 4, n_out: int = 3):
    """Random inputs [n, n_in], one-hot targets [n, n_out] and fresh params."""
    k_x, k_t, k_w = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (n, n_in))
    t = jax.nn.one_hot(jax.random.randint(k_t, (n,), 0, n_out), n_out)
    return x, t, bp.init(k_w, n_in, n_hidden, n_out)


def _loop(params, x, t, eta, order, activation, cost):
    """Reference protocol: a Python loop of single-pattern updates in the given order."""
    for m in order:
        changes = bp.weight_changes(params, x[m : m + 1], t[m : m + 1], eta, activation, cost)
        params = jax.tree.map(jnp.add, params, changes)
    return params


def _max_diff(a: bp.Params, b: bp.Params) -> float:
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def digits():
    """Pixels / 16 and one-hot labels, split first 1400 (train) / remaining 397 (test)."""
    d = load_digits()
    x = jnp.asarray(d.data / 16.0, jnp.float32)
    t = jax.nn.one_hot(d.target, 10)
    return x[:1400], t[:1400], x[1400:], t[1400:]


@pytest.mark.parametrize("activation,cost", COMBOS)
def test_gradient_matches_jax_grad(x64, activation, cost):
    x, t, params = _toy(jax.random.key(0))
    assert params.w_ji.dtype == jnp.float64
    ours = bp.gradient(params, x, t, activation, cost)
    theirs = jax.grad(bp.criterion)(params, x, t, activation, cost)
    assert _max_diff(ours, theirs) < 1e-6
    assert min(float(jnp.max(jnp.abs(g))) for g in ours) > 1e-3  # not trivially zero


@pytest.mark.parametrize("activation,cost", COMBOS)
def test_one_update_lowers_cost(activation, cost):
    x, t, params = _toy(jax.random.key(1), n=32)
    changes = bp.weight_changes(params, x, t, 0.1, activation, cost)
    after = jax.tree.map(jnp.add, params, changes)
    j_before = float(bp.criterion(params, x, t, activation, cost))
    j_after = float(bp.criterion(after, x, t, activation, cost))
    assert j_after < j_before - 1e-5


def test_batch_epoch_is_one_full_update(x64):
    x, t, params = _toy(jax.random.key(2))
    out = bp.batch_epoch(params, x, t, 0.5, jax.random.key(0), activation="tanh", cost="squared")
    changes = bp.weight_changes(params, x, t, 0.5, "tanh", "squared")
    assert _max_diff(out, jax.tree.map(jnp.add, params, changes)) < 1e-12


def test_online_epoch_visits_patterns_in_order(x64):
    x, t, params = _toy(jax.random.key(3), n=6)
    args = dict(activation="sigmoid", cost="cross_entropy")
    out = bp.online_epoch(params, x, t, 0.5, jax.random.key(0), **args)
    assert _max_diff(out, _loop(params, x, t, 0.5, range(6), **args)) < 1e-6
    assert _max_diff(out, _loop(params, x, t, 0.5, reversed(range(6)), **args)) > 1e-4


def test_stochastic_epoch_makes_n_updates_at_drawn_patterns(x64):
    x, t, params = _toy(jax.random.key(4), n=6)
    key = jax.random.key(5)
    order = bp.stochastic_order(key, 6)
    assert order.shape == (6,) and int(order.min()) >= 0 and int(order.max()) < 6
    args = dict(activation="relu", cost="squared")
    out = bp.stochastic_epoch(params, x, t, 0.5, key, **args)
    assert _max_diff(out, _loop(params, x, t, 0.5, order.tolist(), **args)) < 1e-6


@pytest.mark.parametrize("protocol,per_epoch", [("batch", 1), ("stochastic", 8), ("online", 8)])
def test_history_counts_updates_and_presentations(protocol, per_epoch):
    x, t, params = _toy(jax.random.key(6))
    _, history = bp.train(
        params, x, t, eta=0.1, key=jax.random.key(0), protocol=protocol, max_epochs=3
    )
    assert [r.updates for r in history] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert [r.presentations for r in history] == [8, 16, 24]
    assert all(math.isnan(r.val_error) for r in history)


def test_digits_test_accuracy_equals_the_autodiff_network(digits):
    x_train, t_train, x_test, t_test = digits
    start, key = bp.init(jax.random.key(0), 64, 32, 10), jax.random.key(1)
    settings = {"activation": "tanh", "cost": "cross_entropy"}
    params, history = bp.train(
        start, x_train, t_train, eta=0.02, key=key, protocol="stochastic", max_epochs=20, **settings
    )
    accuracy = 1.0 - float(bp.error_rate(params, x_test, t_test, **settings))
    assert accuracy >= 0.90
    assert history[-1].cost < 0.5 * history[0].cost
    assert history[-1].updates == 20 * 1400

    @jax.jit
    def autodiff_epoch(w, epoch_key):
        """The same stochastic epoch with jax.grad of the criterion in place of the deltas."""

        def step(w, m):
            grads = jax.grad(bp.criterion)(w, x_train[m][None], t_train[m][None], **settings)
            return jax.tree.map(lambda p, g: p - 0.02 * g, w, grads), None

        return jax.lax.scan(step, w, bp.stochastic_order(epoch_key, len(x_train)))[0]

    twin = start
    for m in range(1, 21):
        twin = autodiff_epoch(twin, jax.random.fold_in(key, m))
    twin_accuracy = 1.0 - float(bp.error_rate(twin, x_test, t_test, **settings))
    assert abs(accuracy - twin_accuracy) <= 1 / len(x_test)  # at most one pattern apart
    assert _max_diff(params, twin) < 1e-4  # 28,000 float32 updates apart by 1.6e-6 here


def test_threshold_rule_stops_early(digits):
    x, t = digits[0][:200], digits[1][:200]
    theta = 1e-3
    params = bp.init(jax.random.key(0), 64, 16, 10)
    _, history = bp.train(
        params,
        x,
        t,
        eta=1.0,
        key=jax.random.key(0),
        cost="cross_entropy",
        max_epochs=500,
        theta=theta,
    )
    costs = [float(bp.criterion(params, x, t, "sigmoid", "cross_entropy"))]
    costs += [r.cost for r in history]
    changes = np.abs(np.diff(costs))
    assert 1 < len(history) < 500
    assert changes[-1] < theta and np.all(changes[:-1] >= theta)


def test_validation_rule_returns_best_epoch_params(digits):
    x_train, t_train, x_val, t_val = digits[0][:300], digits[1][:300], digits[2], digits[3]
    params0 = bp.init(jax.random.key(0), 64, 32, 10)
    kwargs = dict(eta=0.2, key=jax.random.key(1), protocol="stochastic", activation="tanh")
    best, history = bp.train(
        params0, x_train, t_train, max_epochs=200, x_val=x_val, t_val=t_val, patience=3, **kwargs
    )
    val_errors = [r.val_error for r in history]
    best_epoch = int(np.argmin(val_errors)) + 1  # first epoch reaching the minimum
    assert len(history) == best_epoch + 3 < 200
    rerun, _ = bp.train(params0, x_train, t_train, max_epochs=best_epoch, **kwargs)
    assert _max_diff(best, rerun) == 0.0
    assert float(bp.error_rate(best, x_val, t_val, "tanh", "squared")) == min(val_errors)
