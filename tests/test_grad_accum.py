"""Gradient accumulation: K micro-batches give the whole batch's update to rounding (a model
without BatchNorm), in the loop and in a vmapped group; a batch K does not divide is refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import metrics_without_timing, run_module

from research import data as data_lib
from research.errors import UserError
from research.models import build_model
from research.tasks import build_task
from research.train.loop import train_and_evaluate
from research.train.optim import make_optimizer
from research.train.setup import model_kwargs
from research.train.steps import create_state, make_train_step
from research.validation import validate


def test_accumulated_micro_batches_step_like_the_whole_batch(make_config):
    config = make_config("digits_mlp", **{"model.hidden_sizes": (32,)})
    dataset = data_lib.load(config.data)
    task = build_task(config.task, dataset.info)
    model = build_model(config.model.name, **model_kwargs(config.model, dataset.info))
    key = jax.random.key(0)
    batches = [
        jax.tree.map(jnp.asarray, data_lib.train_batch(dataset, 0, 0, s, 64)) for s in range(5)
    ]
    example, _ = task.model_inputs(batches[0], key, False)
    params = {}
    for steps in (1, 4):
        state = create_state(model, make_optimizer(config.optimizer, 10, 1), example, key)
        train_step = jax.jit(make_train_step(task, key, grad_accum_steps=steps))
        for batch in batches:
            state, metrics = train_step(state, batch)
        params[steps] = state.params
        assert float(metrics["count"]) == 64  # metric sums cover the whole batch
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), params[1], params[4])
    assert max(jax.tree.leaves(moved)) < 1e-6
    initial = create_state(model, make_optimizer(config.optimizer, 10, 1), example, key).params
    travelled = jax.tree.map(lambda a, b: np.abs(a - b).max(), params[1], initial)
    assert max(jax.tree.leaves(travelled)) > 1e-3  # so the comparison above can fail


@pytest.mark.parametrize("executor", ["single", "vmap"])
def test_a_run_with_accumulation_matches_the_plain_run(make_config, tmp_path, executor):
    from research.train.loop import train_points

    runs = []
    for steps in (1, 2):
        overrides = {"train.num_epochs": 1, "train.grad_accum_steps": steps}
        if executor == "single":
            train_and_evaluate(make_config(**overrides), tmp_path / str(steps))
            runs.append(metrics_without_timing(tmp_path / str(steps)))
            continue
        configs = [
            make_config(**overrides, **{"optimizer.learning_rate": lr}) for lr in (1e-3, 3e-3)
        ]
        workdirs = [tmp_path / f"{steps}_{i}" for i in range(2)]
        train_points(configs, workdirs, tmp_path / f"group_{steps}", stacked=True)
        runs.append([row for w in workdirs for row in metrics_without_timing(w)])
    assert [sorted(row) for row in runs[0]] == [sorted(row) for row in runs[1]] and runs[0]
    plain, accumulated = ([v for row in run for _, v in sorted(row.items())] for run in runs)
    for a, b in zip(plain, accumulated, strict=True):
        assert a == b if isinstance(a, str) else a == pytest.approx(b, rel=1e-5)


def test_a_batch_the_micro_batches_do_not_divide_is_refused(make_config):
    with pytest.raises(UserError, match=r"train.grad_accum_steps.*divides data.batch_size \(64\)"):
        validate(make_config(**{"train.grad_accum_steps": 3}))


def test_a_micro_batch_the_devices_do_not_divide_is_refused_naming_both_fields(tmp_path):
    flags = ["--config.train.grad_accum_steps=4", "--config.data.batch_size=16"]
    result = run_module(
        "launch.train",
        *flags,
        f"--workdir={tmp_path / 'w'}",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 2, result.stderr
    assert "micro-batch data.batch_size / train.grad_accum_steps=4 is not divisible by the 8" in (
        result.stderr
    )
    assert not (tmp_path / "w").exists()
