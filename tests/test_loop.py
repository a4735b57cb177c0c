"""The training loop in-process: one step learns, the run record, seeds, early stopping, TFDS."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import metrics_without_timing, mock_tfds

from research import data as data_lib
from research.errors import UserError
from research.models import build_model
from research.tasks import build_task
from research.train.loop import (
    Diverged,
    dispatch_lengths,
    steps_in_dispatch,
    train_and_evaluate,
)
from research.train.optim import make_optimizer
from research.train.population import Population
from research.train.setup import model_kwargs
from research.train.steps import create_state, make_eval_step, make_train_step

TRAIN_SIZE = 1294  # digits: 1797 - 359 test - 144 validation


def test_one_step_lowers_the_loss_on_its_batch(make_config):
    config = make_config("digits_lenet", **{"optimizer.learning_rate": 1e-3})
    dataset = data_lib.load(config.data)
    task = build_task(config.task, dataset.info)
    model = build_model(config.model.name, **model_kwargs(config.model, dataset.info))
    batch = jax.tree.map(jnp.asarray, data_lib.train_batch(dataset, 0, 0, 0, 64))
    key = jax.random.key(0)
    example, _ = task.model_inputs(batch, key, False)
    state = create_state(model, make_optimizer(config.optimizer, 10, 1), example, key)
    evaluate = jax.jit(make_eval_step(task))
    before = evaluate(state, batch)
    state, _ = jax.jit(make_train_step(task, key))(state, batch)
    after = evaluate(state, batch)
    assert after["loss"] < 0.97 * before["loss"]


def test_evaluation_reads_the_parameter_average_when_the_optimizer_keeps_one(make_config):
    config = make_config("digits_lenet", **{"optimizer.ema_decay": 0.99})
    dataset = data_lib.load(config.data)
    task = build_task(config.task, dataset.info)
    model = build_model(config.model.name, **model_kwargs(config.model, dataset.info))
    batch = jax.tree.map(jnp.asarray, data_lib.train_batch(dataset, 0, 0, 0, 64))
    key = jax.random.key(0)
    example, _ = task.model_inputs(batch, key, False)
    state = create_state(model, make_optimizer(config.optimizer, 10, 1), example, key)
    step, evaluate = jax.jit(make_train_step(task, key)), jax.jit(make_eval_step(task))
    for _ in range(3):
        state, _ = step(state, batch)
    average = optax.tree_utils.tree_get(state.opt_state, "ParamsAverage").average
    gaps = jax.tree.map(lambda a, p: np.abs(a - p).max(), average, state.params)
    assert max(jax.tree.leaves(gaps)) > 1e-4  # so the evaluations below can tell them apart
    config.optimizer.ema_decay = 0.0
    plain = state.replace(
        params=average, opt_state=make_optimizer(config.optimizer, 10, 1).init(average)
    )
    assert evaluate(state, batch)["loss"] == evaluate(plain, batch)["loss"]
    assert (
        evaluate(state.replace(params=average), batch)["loss"]
        != evaluate(state.replace(opt_state=plain.opt_state), batch)["loss"]
    )


def test_run_record_has_every_file_and_consistent_numbers(make_config, tmp_path):
    summary = train_and_evaluate(make_config(**{"train.num_epochs": 3}), tmp_path)
    for name in ("config.json", "metrics.jsonl", "summary.json", "learning_curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in records] == ["train", "val"] * 3 + ["test"]
    val = [r for r in records if r["split"] == "val"]
    best = max(reversed(val), key=lambda r: r["accuracy"])  # Ties go to the later epoch.
    assert summary["best"]["epoch"] == best["epoch"]
    assert summary["best"]["val"]["accuracy"] == best["accuracy"]
    assert records[-1]["step"] == summary["best"]["step"]
    assert summary["test"]["accuracy"] == records[-1]["accuracy"]
    assert summary["steps"] == 3 * (TRAIN_SIZE // 64) and summary["status"] == "finished"
    assert summary["examples_per_sec"] > 0 and summary["wall_time_s"] > 0
    assert {"jax", "flax", "optax", "orbax-checkpoint", "python"} <= summary["versions"].keys()
    wall = [r["wall_time"] for r in records]
    assert wall == sorted(wall)
    assert json.loads((tmp_path / "summary.json").read_text())["seed"] == 0


def test_training_improves_accuracy_well_above_chance(make_config, tmp_path):
    config = make_config(**{"train.num_epochs": 4, "optimizer.learning_rate": 1e-2})
    summary = train_and_evaluate(config, tmp_path)
    assert summary["test"]["accuracy"] > 0.85


def test_same_seed_same_numbers_and_different_seed_different(make_config, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_and_evaluate(make_config(seed=seed), tmp_path / name)
    a, b, c = (metrics_without_timing(tmp_path / name) for name in "abc")
    assert a == b
    assert [r["loss"] for r in a] != [r["loss"] for r in c]


def test_a_different_config_in_the_same_workdir_is_refused(make_config, tmp_path):
    train_and_evaluate(make_config(), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(
        UserError, match=r"optimizer\.learning_rate: 0\.003 in the workdir, 0\.1 now"
    ):
        train_and_evaluate(make_config(**{"optimizer.learning_rate": 0.1}), tmp_path)
    assert before == {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    summary = train_and_evaluate(
        make_config(**{"optimizer.learning_rate": 0.1}), tmp_path, overwrite=True
    )
    assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["learning_rate"] == 0.1
    assert summary["steps"] == 2 * (TRAIN_SIZE // 64)


def test_dispatches_hold_whole_multiples_and_end_at_every_epoch_end_and_checkpoint():
    """10 steps per epoch, up to 4 steps per dispatch, a checkpoint every 6 steps."""
    starts, step = [], 0
    while step < 30:
        starts.append((step, steps_in_dispatch(step, 10, 4, 6)))
        step += starts[-1][1]
    assert step == 30
    assert [start for start, length in starts if length > 1] == [0, 14, 20, 24]
    assert {length for _, length in starts} == {1, 4}
    ends = {start + length for start, length in starts}
    assert {10, 20, 30, 6, 12, 18, 24} <= ends  # where the loop validates and saves
    assert [steps_in_dispatch(s, 10, 4, 0) for s in (0, 4, 8, 9)] == [4, 4, 1, 1]
    assert [steps_in_dispatch(s, 10, 1, 6) for s in range(10)] == [1] * 10


@pytest.mark.parametrize("steps_per_epoch", [1, 7, 8, 12, 40])
@pytest.mark.parametrize("per_dispatch", [1, 2, 4, 8, 40])
@pytest.mark.parametrize("every", [0, 3, 8, 16])
def test_the_programs_compiled_before_training_are_those_the_run_dispatches(
    steps_per_epoch, per_dispatch, every
):
    """Walks two periods of the plan (it repeats every lcm(epoch, checkpoint interval) steps)."""
    lengths, step = set(), 0
    while step < 2 * math.lcm(steps_per_epoch, every or 1):
        length = steps_in_dispatch(step, steps_per_epoch, per_dispatch, every)
        lengths.add(length)
        step += length
    assert lengths == dispatch_lengths(steps_per_epoch, per_dispatch, every)


def test_several_steps_per_dispatch_train_the_same_run_to_float_rounding(
    make_config, tmp_path, monkeypatch
):
    """The scan over several batches runs the same step, compiled inside a loop: the same run
    to float rounding (the scan's program rounds differently from the single step's)."""
    dispatched = []
    batches_at = Population.batches_at
    monkeypatch.setattr(
        Population,
        "batches_at",
        lambda self, first, count: dispatched.append(count) or batches_at(self, first, count),
    )
    runs = {}
    for per_dispatch in (1, 4):
        config = make_config(
            "digits_lenet",
            **{"train.steps_per_dispatch": per_dispatch, "train.checkpoint_every_steps": 6},
        )
        workdir = tmp_path / str(per_dispatch)
        train_and_evaluate(config, workdir)
        latest = workdir / "checkpoints" / "latest"
        newest = max(latest.iterdir(), key=lambda p: int(p.name))
        params = ocp.StandardCheckpointer().restore(newest / "state")["params"]
        runs[per_dispatch] = (metrics_without_timing(workdir), ocp.tree.to_flat_dict(params))
    # 20 steps per epoch, saves every 6: dispatches of 4 from steps 0, 8, 12, 20, 24, 32, 36
    # (the other 12 steps, and every step of the K=1 run, go one by one through `batch_at`).
    assert dispatched == [4] * 7
    (rows, params), (rows_4, params_4) = runs[1], runs[4]
    assert len(rows) == 5 and [(r["step"], r["split"]) for r in rows] == [
        (r["step"], r["split"]) for r in rows_4
    ]
    for row, row_4 in zip(rows, rows_4, strict=True):
        assert row_4["loss"] == pytest.approx(row["loss"], rel=1e-4)
        assert abs(row_4["accuracy"] - row["accuracy"]) <= 0.01
    assert params.keys() == params_4.keys()
    for key in params:
        scale = float(np.abs(params[key]).max())
        np.testing.assert_allclose(params_4[key], params[key], atol=1e-3 * scale)


def test_the_loop_compiles_its_steps_with_the_populations_compiler_options(
    make_config, tmp_path, monkeypatch
):
    """An option XLA rejects reaches the compiler: the loop uses CPU_STEP_COMPILER_OPTIONS."""
    bad = {"xla_cpu_experimental_ynn_fusion_type": "NOT_A_FUSION_TYPE"}
    monkeypatch.setattr("research.train.population.CPU_STEP_COMPILER_OPTIONS", bad)
    with pytest.raises(Exception, match="NOT_A_FUSION_TYPE"):
        train_and_evaluate(make_config(), tmp_path)


def test_a_run_saved_before_a_field_existed_resumes_at_the_fields_default(make_config, tmp_path):
    """A workdir from an older version (its config.json lacks train.steps_per_dispatch) is
    taken as the same config while the field is at its default; at another value it is not."""
    summary = train_and_evaluate(make_config(), tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["train"]["steps_per_dispatch"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert train_and_evaluate(make_config(), tmp_path)["test"] == summary["test"]
    with pytest.raises(UserError, match="train.steps_per_dispatch: 1 in the workdir, 2 now"):
        train_and_evaluate(make_config(**{"train.steps_per_dispatch": 2}), tmp_path)


def test_early_stopping_stops_after_patience_and_tests_the_best_epoch(make_config, tmp_path):
    # With a zero learning rate nothing improves after epoch 1, so patience 2 stops at epoch 3;
    # the tied epochs 1-3 keep the latest as best.
    config = make_config(
        **{"optimizer.learning_rate": 0.0, "train.num_epochs": 6, "train.patience": 2}
    )
    summary = train_and_evaluate(config, tmp_path)
    assert summary["status"] == "early_stopped"
    assert summary["epochs"] == 3 and summary["best"]["epoch"] == 3
    rerun = train_and_evaluate(config, tmp_path)
    assert rerun["steps"] == summary["steps"] and rerun["test"] == summary["test"]


def test_a_diverging_run_stops_with_the_step_and_saves_nothing_from_that_epoch(
    make_config, tmp_path
):
    # Plain SGD at 1e38 overflows the logits to inf in the first epoch (20 steps): the loss is NaN.
    config = make_config(**{"optimizer.name": "sgd", "optimizer.learning_rate": 1e38})
    with pytest.raises(Diverged, match=r"diverged by step 20: .* epoch 1 \(steps 1-20\) is nan"):
        train_and_evaluate(config, tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == ""
    assert not list((tmp_path / "checkpoints" / "latest").iterdir())


def test_mnist_lenet_experiment_runs_on_mock_tfds_data(make_config, tmp_path):
    config = make_config("mnist_lenet", **{"train.num_epochs": 1, "data.batch_size": 16})
    with mock_tfds(num_examples=96):
        summary = train_and_evaluate(config, tmp_path)
    # 96 mock examples, 10% carved for validation: 86 train -> 5 steps of 16.
    assert summary["steps"] == 5
    assert np.isfinite(summary["test"]["loss"])
