"""The vmap executor: grouping by shape, and a group's results equal separate runs, resumed too."""

import json

import numpy as np
import pytest

from research.sweep import axis, expand, product
from research.sweep_run import run_sweep
from research.train import vmap
from research.train.checkpoint import Checkpointer

LR, SEED = "optimizer.learning_rate", "seed"


def _rows(directory) -> list[dict]:
    return [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]


def test_points_group_by_everything_but_the_traced_values(make_config):
    points = expand(
        make_config(),
        [
            {LR: 1e-3, SEED: 0},
            {LR: 1e-2, SEED: 1, "optimizer.weight_decay": 1e-4, "optimizer.momentum": 0.5},
            {"data.batch_size": 32},
            {"model.dropout_rate": 0.1},  # flax's Dropout branches on the rate in Python
            {"data.batch_size": 32, SEED: 3},
        ],
    )
    groups = [[point.index for point in group] for group in vmap.group_points(points)]
    assert groups == [[0, 1], [2, 4], [3]]


class _CrashAfterFirstSave(Checkpointer):
    """A group checkpointer that dies right after its first save (the end of epoch 1)."""

    def save(self, state, meta, best=False):
        super().save(state, meta, best)
        self.wait()
        raise RuntimeError("killed after epoch 1")


@pytest.mark.slow
def test_vmap_equals_separate_runs_and_resumes_after_a_crash(make_config, tmp_path, monkeypatch):
    # 2 learning rates x 2 seeds, patience 1: at 1e-4 accuracy ties after epoch 2 and stops.
    config = make_config(**{"train.num_epochs": 3, "train.patience": 1})
    points = expand(config, product(axis(LR, [1e-4, 1e-2]), axis(SEED, [0, 1])))
    spec = str(tmp_path / "experiment.py")
    with monkeypatch.context() as patch:
        patch.setattr(vmap, "Checkpointer", _CrashAfterFirstSave)
        crashed = run_sweep(spec, points, tmp_path / "vmap", "vmap")
    assert crashed.line() == "0 finished, 4 failed, 0 skipped"
    assert "killed after epoch 1" in (tmp_path / "vmap" / points[0].name / "error.txt").read_text()
    assert {len(_rows(tmp_path / "vmap" / p.name)) for p in points} == {2}  # epoch 1's rows

    resumed = run_sweep(spec, points, tmp_path / "vmap", "vmap")
    assert resumed.line() == "4 finished, 0 failed, 0 skipped"
    # The local executor runs each point by itself through train_and_evaluate.
    assert run_sweep(spec, points, tmp_path / "separate").line() == resumed.line()
    statuses, steps = [], []
    for point in points:
        separate = tmp_path / "separate" / point.name
        expected = json.loads((separate / "summary.json").read_text())
        got = json.loads((tmp_path / "vmap" / point.name / "summary.json").read_text())
        statuses.append(got["status"])
        steps.append(got["steps"])
        assert (got["status"], got["steps"], got["best"]["epoch"]) == (
            expected["status"],
            expected["steps"],
            expected["best"]["epoch"],
        ), point.name
        rows, separate_rows = _rows(tmp_path / "vmap" / point.name), _rows(separate)
        assert [(r["split"], r["step"]) for r in rows] == [
            (r["split"], r["step"]) for r in separate_rows
        ]
        for key in ("loss", "accuracy", "learning_rate"):
            values = [r.get(key, 0.0) for r in rows]
            np.testing.assert_allclose(
                values, [r.get(key, 0.0) for r in separate_rows], rtol=1e-4, err_msg=point.name
            )
    assert statuses == ["early_stopped"] * 2 + ["finished"] * 2
    assert steps == [40, 40, 60, 60]  # 20 steps an epoch; a stopped point's state stays put
