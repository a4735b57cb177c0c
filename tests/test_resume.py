"""Interrupted runs resume to the same bits: SIGKILL (even mid-save) and SIGTERM preemption."""

import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import ROOT, metrics_without_timing, run_module

pytestmark = pytest.mark.slow

ARGS = (
    "--config=experiments/digits_mlp.py",
    "--config.train.num_epochs=4",
    "--config.data.batch_size=32",
    "--config.model.hidden_sizes=(32,)",
    "--config.train.checkpoint_every_steps=1",
)


def final_params(workdir):
    latest = workdir / "checkpoints" / "latest"
    step = max(int(p.name) for p in latest.iterdir() if p.name.isdigit())
    state = ocp.StandardCheckpointer().restore(latest / str(step) / "state")
    return step, state["params"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    result = run_module("launch.train", *ARGS, f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr
    return workdir


def start(workdir):
    return subprocess.Popen(
        [sys.executable, "-m", "launch.train", *ARGS, f"--workdir={workdir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(workdir, min_step, process, timeout=120):
    latest = workdir / "checkpoints" / "latest"
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        steps = (
            [int(p.name) for p in latest.glob("*") if p.name.isdigit()] if latest.exists() else []
        )
        if steps and max(steps) >= min_step:
            return
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint at step >= {min_step}: {process.communicate()}")


def assert_same_run(workdir, reference):
    assert metrics_without_timing(workdir) == metrics_without_timing(reference)
    step, params = final_params(workdir)
    ref_step, ref_params = final_params(reference)
    assert step == ref_step
    flat, ref_flat = ocp.tree.to_flat_dict(params), ocp.tree.to_flat_dict(ref_params)
    assert flat.keys() == ref_flat.keys()
    for key in flat:
        np.testing.assert_array_equal(flat[key], ref_flat[key])


def test_sigkill_mid_run_then_rerun_equals_uninterrupted_bit_for_bit(uninterrupted, tmp_path):
    process = start(tmp_path)
    wait_for_checkpoint(tmp_path, 50, process)  # Mid epoch 2 of 4 (35 steps per epoch).
    process.send_signal(signal.SIGKILL)  # Saves run every step, so this often lands mid-save.
    process.wait()
    # A save cut short leaves a temporary directory; it must never be restored.
    (tmp_path / "checkpoints" / "latest" / "999.orbax-checkpoint-tmp-0").mkdir()
    result = run_module("launch.train", *ARGS, f"--workdir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert_same_run(tmp_path, uninterrupted)


def test_sigterm_saves_exits_zero_and_the_rerun_finishes_identically(uninterrupted, tmp_path):
    process = start(tmp_path)
    wait_for_checkpoint(tmp_path, 40, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "rerun to resume" in stdout and "preempted at step" in stdout
    result = run_module("launch.train", *ARGS, f"--workdir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert_same_run(tmp_path, uninterrupted)


def test_sigusr1_prints_the_stacks_and_the_run_goes_on_unchanged(uninterrupted, tmp_path):
    process = start(tmp_path)
    wait_for_checkpoint(tmp_path, 40, process)
    process.send_signal(signal.SIGUSR1)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Current thread" in stderr and "train_and_evaluate" in stderr, stderr[-3000:]
    assert_same_run(tmp_path, uninterrupted)
