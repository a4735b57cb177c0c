"""vmapped groups: grouping by shape; a group equals separate runs (resumed too, with weight
decay and momentum varied); a group on 8 simulated devices equals one device."""

import json

import numpy as np
import pytest
from conftest import ROOT, run_module

from research.sweep import axis, expand, product, zipped
from research.sweep_run import run_sweep
from research.train import loop
from research.train.checkpoint import Checkpointer
from research.train.population import group_points

LR, SEED = "optimizer.learning_rate", "seed"


def _rows(directory) -> list[dict]:
    return [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]


def test_points_group_by_everything_but_the_traced_values(make_config):
    points = expand(
        make_config(**{"optimizer.name": "momentum"}),
        [
            {LR: 1e-3, SEED: 0},
            {LR: 1e-2, SEED: 1, "optimizer.weight_decay": 1e-4, "optimizer.momentum": 0.5},
            {"data.batch_size": 32},
            {"model.dropout_rate": 0.1},  # flax's Dropout branches on the rate in Python
            {"data.batch_size": 32, SEED: 3},
        ],
    )
    groups = [[point.index for point in group] for group in group_points(points)]
    assert groups == [[0, 1], [2, 4], [3]]
    capped = [[point.index for point in group] for group in group_points(points, max_size=1)]
    assert capped == [[0], [1], [2], [4], [3]]


class _CrashAfterFirstSave(Checkpointer):
    """A group checkpointer that dies right after its first save (the end of epoch 1)."""

    def save(self, step, state, meta):
        super().save(step, state, meta)
        self.wait()
        raise RuntimeError("killed after epoch 1")


def assert_same_records(got_dir, expected_dir, name):
    expected = json.loads((expected_dir / "summary.json").read_text())
    got = json.loads((got_dir / "summary.json").read_text())
    assert (got["status"], got["steps"], got["best"]["epoch"]) == (
        expected["status"],
        expected["steps"],
        expected["best"]["epoch"],
    ), name
    rows, separate_rows = _rows(got_dir), _rows(expected_dir)
    positions = lambda records: [(r["split"], r["step"]) for r in records]
    assert positions(rows) == positions(separate_rows)
    for key in ("loss", "accuracy", "learning_rate"):
        values, expected_values = ([r.get(key, 0.0) for r in rs] for rs in (rows, separate_rows))
        np.testing.assert_allclose(values, expected_values, rtol=1e-4, err_msg=f"{name} {key}")
    return got


@pytest.mark.slow
def test_vmap_equals_separate_runs_and_resumes_after_a_crash(make_config, tmp_path, monkeypatch):
    # 2 learning rates x 2 seeds, patience 1: at 1e-4 accuracy ties after epoch 2 and stops.
    # Then SGD with momentum, whose momentum and weight decay differ per point.
    config = make_config(**{"train.num_epochs": 3, "train.patience": 1})
    points = expand(config, product(axis(LR, [1e-4, 1e-2]), axis(SEED, [0, 1])))
    momentum = {"optimizer.name": "momentum", LR: 0.05, "train.patience": 0}
    points += expand(
        config,
        [
            {**momentum, **point}
            for point in zipped(
                axis("optimizer.momentum", [0.5, 0.9]), axis("optimizer.weight_decay", [0.0, 1e-3])
            )
        ],
    )
    spec = str(tmp_path / "experiment.py")
    with monkeypatch.context() as patch:
        patch.setattr(loop, "Checkpointer", _CrashAfterFirstSave)
        crashed = run_sweep(spec, points, tmp_path / "vmap", "vmap")
    assert crashed.line() == "0 finished, 6 failed, 0 skipped"
    assert "killed after epoch 1" in (tmp_path / "vmap" / points[0].name / "error.txt").read_text()
    assert {len(_rows(tmp_path / "vmap" / p.name)) for p in points} == {2}  # epoch 1's rows

    resumed = run_sweep(spec, points, tmp_path / "vmap", "vmap")
    assert resumed.line() == "6 finished, 0 failed, 0 skipped"
    # The local executor runs each point by itself through train_and_evaluate.
    assert run_sweep(spec, points, tmp_path / "separate").line() == resumed.line()
    statuses, steps = [], []
    for point in points:
        got = assert_same_records(
            tmp_path / "vmap" / point.name, tmp_path / "separate" / point.name, point.name
        )
        statuses.append(got["status"])
        steps.append(got["steps"])
        assert (got["executor"], got["group_size"]) == ("vmap", 4 if len(statuses) <= 4 else 2)
    assert statuses == ["early_stopped"] * 2 + ["finished"] * 4
    assert steps == [40, 40, 60, 60, 60, 60]  # 20 steps an epoch; a stopped point stays put
    # The momentum points differ from each other (the varied values reach the optimizer).
    finals = [_rows(tmp_path / "vmap" / p.name)[-2]["loss"] for p in points[4:]]
    assert finals[0] != finals[1]


SWEEP = """
from experiments.digits_mlp import get_config
from research.sweep import axis


def sweep():
    return axis("optimizer.learning_rate", [{rates}])
"""


@pytest.mark.slow
@pytest.mark.multiprocess
def test_a_group_on_eight_devices_equals_one_device(tmp_path):
    """8 points on 8 simulated devices (one point each, one program) against one device."""
    rates = ", ".join(str(1e-3 * (i + 1)) for i in range(8))
    spec = tmp_path / "eight_rates.py"
    spec.write_text(SWEEP.format(rates=rates))
    args = [f"--config={spec}", "--executor=vmap", "--config.train.num_epochs=2"]
    args += ["--config.data.batch_size=64", "--config.model.hidden_sizes=(16,)"]
    for devices in (1, 8):
        env = {
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            "PYTHONPATH": str(ROOT),
        }
        result = run_module("launch.sweep", *args, f"--workdir={tmp_path / str(devices)}", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    names = sorted(p.parent.name for p in (tmp_path / "1").glob("*/summary.json"))
    assert len(names) == 8
    for name in names:
        got = assert_same_records(tmp_path / "8" / name, tmp_path / "1" / name, name)
        assert got["devices"] == 8
