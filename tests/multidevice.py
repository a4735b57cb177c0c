"""Helpers for tests that run `launch.train` on simulated CPU devices and several processes.

One small digits LeNet run (60 steps) serves every scale-out test, so runs on different
topologies can be compared with each other and with one 1-device reference per session.
"""

import fcntl
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import ROOT, metrics_without_timing

ARGS = (
    "--config=experiments/digits_lenet.py",
    "--config.train.num_epochs=3",  # 20 steps per epoch.
    "--config.data.batch_size=64",
    "--config.model.features=(8, 16)",
    "--config.model.dense_sizes=(32,)",
)
# Parameters and metrics on different device counts agree to float rounding (sums reduce in a
# different order), not to the bit; the same topology reproduces the bits.
RTOL = 1e-5
KILL_WAIT_S = 30  # a SIGKILLed process is reaped in well under a second
STARTED: list[subprocess.Popen] = []


def device_env(devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    }


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Starts a command in its own process group, so a teardown can kill all it started."""
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    STARTED.append(process)
    return process


def start_train(workdir: pathlib.Path, devices: int, *extra: str) -> subprocess.Popen:
    """`python -m launch.train` on `devices` simulated CPU devices."""
    command = [sys.executable, "-m", "launch.train", *ARGS, f"--workdir={workdir}", *extra]
    return start(command, device_env(devices))


def start_cluster(workdir: pathlib.Path, processes: int, devices: int, *extra: str):
    """`launch.local_cluster` with `processes` x `devices`."""
    launcher = ["launch.local_cluster", f"--num_processes={processes}"]
    launcher.append(f"--devices_per_process={devices}")
    command = [sys.executable, "-m", *launcher, "--", *ARGS, f"--workdir={workdir}", *extra]
    return start(command, {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"})


def kill(process: subprocess.Popen) -> None:
    """Kills the process and everything it started (its process group), then reaps it. Only
    while it runs: once reaped, its id may name another process's group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=KILL_WAIT_S)


def stderr_after_kill(process: subprocess.Popen) -> str:
    """Kills the process group, then returns the stderr it left, waiting a bounded time."""
    kill(process)
    try:
        return process.communicate(timeout=KILL_WAIT_S)[1]
    except subprocess.TimeoutExpired:
        return "(its stderr stayed open after the kill)"


@pytest.fixture(autouse=True)
def leftovers_killed():
    """Import into a test module: no process a test started outlives it."""
    yield
    while STARTED:
        kill(STARTED.pop())


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    """Waits for a run that must succeed; returns its stdout."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGUSR1)  # every launch.train prints where it waits
        time.sleep(3)
        stacks = stderr_after_kill(process)
        raise AssertionError(
            f"still running after {timeout} s; stacks:\n{stacks[-30000:]}"
        ) from None
    assert process.returncode == 0, stderr[-3000:]
    return stdout


@pytest.fixture(scope="session")
def one_device_run(tmp_path_factory) -> pathlib.Path:
    """The 1-device reference run, made once per session even when xdist workers share it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # This session's, shared by its workers.
    workdir = root / "one_device_reference"
    with open(root / "one_device_reference.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (workdir / "summary.json").exists():
            finish(start_train(workdir, 1))
    return workdir


def wait_for_epoch_record(workdir: pathlib.Path, epoch: int, process, timeout: float = 240):
    """Blocks until metrics.jsonl has `epoch`'s validation line (its checkpoint is saved)."""
    path = workdir / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if path.exists() and f'"epoch": {epoch}, "split": "val"' in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"no epoch {epoch} record: {stderr_after_kill(process)[-3000:]}")


def preempt_after_epoch(process, workdir: pathlib.Path, epoch: int) -> str:
    """Sends SIGTERM once `epoch` is recorded; the run must stop early and exit 0."""
    wait_for_epoch_record(workdir, epoch, process)
    process.send_signal(signal.SIGTERM)
    stdout = finish(process, timeout=120)
    assert "preempted at step" in stdout and "rerun to resume" in stdout, stdout
    return stdout


def final_state(workdir: pathlib.Path) -> dict:
    """The flat {path: array} of the newest checkpoint's params and BN statistics."""
    latest = workdir / "checkpoints" / "latest"
    step = max(int(p.name) for p in latest.iterdir() if p.name.isdigit())
    checkpointer, path = ocp.StandardCheckpointer(), latest / str(step) / "state"
    # Onto this process's one device, whatever the topology that saved it.
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        checkpointer.metadata(path).item_metadata.tree,
    )
    state = checkpointer.restore(path, target)
    return {
        ("step",): state["step"],
        **ocp.tree.to_flat_dict({"params": state["params"], "stats": state["batch_stats"]}),
    }


def assert_close_runs(workdir: pathlib.Path, reference: pathlib.Path, rtol: float = RTOL):
    """Same records and parameters up to float rounding."""
    state, ref_state = final_state(workdir), final_state(reference)
    assert state.keys() == ref_state.keys()
    for key in state:
        # Relative to each leaf's norm: Adam divides by the root of tiny second moments, so a
        # rare element can move 1e-4 relative while the leaf as a whole stays within 1e-5.
        error = np.linalg.norm(state[key] - ref_state[key]) / np.linalg.norm(ref_state[key])
        assert error <= rtol, (key, error)
    records, ref_records = metrics_without_timing(workdir), metrics_without_timing(reference)
    assert len(records) == len(ref_records)
    for record, ref in zip(records, ref_records, strict=True):
        assert record.keys() == ref.keys()
        for name, value in record.items():
            if isinstance(value, str):
                assert value == ref[name]
            else:
                assert math.isclose(value, ref[name], rel_tol=10 * rtol), (name, record, ref)
