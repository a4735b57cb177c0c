"""Tests of research/train/optim.py: learning-rate schedules, optimizers, weight-decay masking."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from research.config import base_config
from research.errors import UserError
from research.train import optim


def _opt_config(**changes) -> ml_collections.ConfigDict:
    config = base_config("t").optimizer
    config.update(changes)
    return config


def _values(schedule, steps) -> list[float]:
    return [float(schedule(step)) for step in steps]


def test_constant_schedule() -> None:
    schedule = optim.schedule(_opt_config(learning_rate=0.3), steps_per_epoch=10, num_epochs=5)
    assert _values(schedule, [0, 1, 25, 49, 50, 500]) == pytest.approx([0.3] * 6)


def test_linear_warmup_reaches_peak_at_warmup_steps() -> None:
    config = _opt_config(learning_rate=0.2, warmup_epochs=1.5)
    schedule = optim.schedule(config, steps_per_epoch=10, num_epochs=4)  # warmup = 15 steps
    assert _values(schedule, [0, 3, 7, 14]) == pytest.approx([0.0, 0.04, 0.28 / 3, 0.28 * 2 / 3])
    assert _values(schedule, [15, 16, 39]) == pytest.approx([0.2, 0.2, 0.2])
    warm = _values(schedule, range(16))
    assert all(b > a for a, b in zip(warm, warm[1:], strict=False))


def test_cosine_decays_to_zero_at_the_end() -> None:
    config = _opt_config(learning_rate=0.1, schedule="cosine")
    schedule = optim.schedule(config, steps_per_epoch=10, num_epochs=6)  # 60 steps
    assert float(schedule(0)) == pytest.approx(0.1)
    assert float(schedule(30)) == pytest.approx(0.05, abs=1e-7)  # half way: cos(pi/2)
    assert float(schedule(60)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule(59)) < 1e-3
    values = _values(schedule, range(61))
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))


def test_cosine_after_warmup_peaks_then_reaches_zero() -> None:
    config = _opt_config(learning_rate=0.1, schedule="cosine", warmup_epochs=0.5)
    schedule = optim.schedule(config, steps_per_epoch=10, num_epochs=6)  # warmup 5 steps
    assert _values(schedule, [0, 5, 60]) == pytest.approx([0.0, 0.1, 0.0], abs=1e-7)
    assert float(schedule(int(5 + 55 / 2))) == pytest.approx(0.05, rel=0.05)


@pytest.mark.parametrize("warmup_epochs", [0.0, 1.0])
def test_step_decay_multiplies_at_each_decay_epoch(warmup_epochs: float) -> None:
    config = _opt_config(
        learning_rate=0.1,
        schedule="step",
        decay_epochs=(2, 4),
        decay_factor=0.1,
        warmup_epochs=warmup_epochs,
    )
    schedule = optim.schedule(config, steps_per_epoch=10, num_epochs=6)
    assert _values(schedule, [10, 19]) == pytest.approx([0.1, 0.1])
    assert _values(schedule, [20, 39]) == pytest.approx([0.01, 0.01])
    assert _values(schedule, [40, 59]) == pytest.approx([0.001, 0.001])


def test_unknown_schedule_is_refused() -> None:
    with pytest.raises(UserError, match="optimizer.schedule='linear'"):
        optim.schedule(_opt_config(schedule="linear"), steps_per_epoch=10, num_epochs=1)


def _quadratic(params):
    return jnp.sum((params["w"] - 3.0) ** 2) + jnp.sum(params["b"] ** 2)


@pytest.mark.parametrize("name", optim.OPTIMIZERS.names())
def test_every_optimizer_lowers_a_quadratic(name: str) -> None:
    assert optim.OPTIMIZERS.names() == ["adam", "adamw", "momentum", "nesterov", "sgd"]
    config = _opt_config(name=name, learning_rate=0.05, weight_decay=1e-4)
    tx = optim.make_optimizer(config, steps_per_epoch=10, num_epochs=1)
    params = {"w": jnp.zeros((2, 2)), "b": jnp.ones(2)}
    state = tx.init(params)
    updates, state = tx.update(jax.grad(_quadratic)(params), state, params)
    new = jax.tree.map(lambda p, u: p + u, params, updates)
    assert float(_quadratic(new)) < float(_quadratic(params)) - 0.1
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.05)


def test_sgd_update_is_learning_rate_times_gradient() -> None:
    tx = optim.make_optimizer(_opt_config(name="sgd", learning_rate=0.5), 10, 1)
    params = {"w": jnp.array([1.0, -2.0])}
    updates, _ = tx.update({"w": jnp.array([0.2, 4.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.1, -2.0], rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_coupled_weight_decay_applies_to_kernels_not_biases(name: str) -> None:
    config = _opt_config(name=name, learning_rate=0.5, weight_decay=0.1)
    tx = optim.make_optimizer(config, steps_per_epoch=10, num_epochs=1)
    params = {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 2.0)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_array_equal(updates["bias"], 0.0)
    assert np.all(np.asarray(updates["kernel"]) < 0)  # shrinks positive weights
    if name in ("sgd", "momentum"):  # first step: -lr * wd * w
        np.testing.assert_allclose(updates["kernel"], -0.5 * 0.1 * 2.0, rtol=1e-6)


def test_adamw_decoupled_decay_applies_to_kernels_not_biases() -> None:
    config = _opt_config(name="adamw", learning_rate=0.5, weight_decay=0.1)
    tx = optim.make_optimizer(config, steps_per_epoch=10, num_epochs=1)
    params = {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 2.0)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_array_equal(updates["bias"], 0.0)
    np.testing.assert_allclose(updates["kernel"], -0.5 * 0.1 * 2.0, rtol=1e-6)


def test_no_weight_decay_means_zero_update_on_zero_gradient() -> None:
    tx = optim.make_optimizer(_opt_config(name="sgd", learning_rate=0.5), 10, 1)
    params = {"kernel": jnp.full((2, 3), 2.0)}
    updates, _ = tx.update({"kernel": jnp.zeros((2, 3))}, tx.init(params), params)
    np.testing.assert_array_equal(updates["kernel"], 0.0)


def test_grad_clip_limits_the_global_norm() -> None:
    config = _opt_config(name="sgd", learning_rate=1.0, grad_clip_norm=1.0)
    tx = optim.make_optimizer(config, 10, 1)
    params = {"w": jnp.zeros(2)}
    updates, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.6, -0.8], rtol=1e-6)


def test_learning_rate_is_readable_from_state_and_follows_schedule() -> None:
    config = _opt_config(name="sgd", learning_rate=0.1, warmup_epochs=1.0)
    tx = optim.make_optimizer(config, steps_per_epoch=4, num_epochs=3)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    assert float(state.hyperparams["learning_rate"]) == 0.0
    used = []
    for _ in range(6):
        updates, state = tx.update({"w": jnp.ones(2)}, state, params)
        used.append(-float(updates["w"][0]))
        # After the update at step k, the state shows the rate that update used.
        assert float(state.hyperparams["learning_rate"]) == pytest.approx(used[-1])
    assert used == pytest.approx([0.0, 0.025, 0.05, 0.075, 0.1, 0.1])


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(UserError, match="optimizer.name='rmsprop'") as error:
        optim.make_optimizer(_opt_config(name="rmsprop"), 10, 1)
    assert "adamw" in str(error.value)  # lists the known names


def test_parameter_average_follows_its_recurrence_and_leaves_updates_alone() -> None:
    params = {"w": jnp.array([1.0, -2.0])}
    plain = optim.make_optimizer(_opt_config(name="sgd", learning_rate=0.5), 10, 1)
    averaged = optim.make_optimizer(
        _opt_config(name="sgd", learning_rate=0.5, ema_decay=0.9), 10, 1
    )
    plain_state, state = plain.init(params), averaged.init(params)
    assert optim.evaluation_params(params, plain_state) is params
    expected = None
    for t, g in enumerate([1.0, 3.0, -2.0, 0.5, 4.0]):
        grads = {"w": jnp.array([g, -g])}
        plain_updates, plain_state = plain.update(grads, plain_state, params)
        updates, state = averaged.update(grads, state, params)
        np.testing.assert_array_equal(updates["w"], plain_updates["w"])  # training unchanged
        params = {"w": params["w"] + updates["w"]}
        keep = min(0.9, t / (10 + t))  # 0 at the first update: the init is forgotten at once
        expected = params["w"] if expected is None else keep * expected + (1 - keep) * params["w"]
        np.testing.assert_allclose(optim.evaluation_params(params, state)["w"], expected, 1e-6)
    assert np.abs(expected - params["w"]).max() > 0.1  # the average lags the parameters
