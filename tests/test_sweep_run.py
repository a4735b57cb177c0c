"""The sweep runner: every point's record, skipping, resuming, failures, the CLI and submitit."""

import collections
import csv
import json
import os
import re
import shutil
import socket
import subprocess
import time

import jax
import pytest
from conftest import ROOT, metrics_without_timing, run_module

from research import config as config_lib
from research.errors import UserError
from research.sweep_run import SlurmOptions, load_points, run_sweep

TINY = {"train.num_epochs": 1, "model.hidden_sizes": (16,), "data.batch_size": 64}
TINY_FLAGS = [f"--config.{key}={value!r}" for key, value in TINY.items()]


def _experiment(tmp_path, sweep: str | None) -> str:
    """A digits_mlp experiment file whose sweep() returns `sweep` (none if None)."""
    body = "from experiments.digits_mlp import get_config  # noqa: F401\n"
    body += "from research.sweep import axis, chain, product  # noqa: F401\n"
    if sweep is not None:
        body += f"\n\ndef sweep():\n    return {sweep}\n"
    path = tmp_path / "experiment.py"
    path.write_text(body)
    return str(path)


def _points(spec: str):
    config = config_lib.load(spec)
    config.unlock()
    config_lib.apply_overrides(config, TINY)
    config.lock()
    return load_points(spec, config)


def test_a_missing_sweep_or_a_bad_key_fails_before_anything_runs(tmp_path):
    with pytest.raises(UserError, match=r"defines no sweep\(\)"):
        _points(_experiment(tmp_path, None))
    with pytest.raises(UserError, match=r"Sweep point 1 .*'optimizer\.learnin_rate'"):
        _points(_experiment(tmp_path, "[{'seed': 1}, {'optimizer.learnin_rate': 0.1}]"))
    assert not list(tmp_path.glob("*/"))


@pytest.mark.slow
def test_local_sweep_records_skips_resumes_and_reuses_compiled_programs(tmp_path):
    spec = _experiment(
        tmp_path, "product(axis('optimizer.learning_rate', [1e-2, 3e-2]), axis('seed', [0, 1]))"
    )
    points, root = _points(spec), tmp_path / "sweep"
    outcome = run_sweep(spec, points, root)
    assert outcome.line() == "4 finished, 0 failed, 0 skipped"
    names = ["000-lr=0.01,seed=0", "001-lr=0.01,seed=1", "002-lr=0.03,seed=0", "003-lr=0.03,seed=1"]
    assert [p.name for p in points] == names
    for point in points:
        directory = root / point.name
        for name in ("config.json", "metrics.jsonl", "summary.json", "learning_curves.png"):
            assert (directory / name).exists(), (point.name, name)
        assert json.loads((directory / "sweep_point.json").read_text()) == {
            "index": point.index,
            "name": point.name,
            "overrides": point.overrides,
        }
        saved = json.loads((directory / "config.json").read_text())
        assert saved["optimizer"]["learning_rate"] == point.overrides["optimizer.learning_rate"]
        assert saved["model"]["hidden_sizes"] == [16] and saved["seed"] == point.overrides["seed"]
    with (root / "results.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [(r["name"], r["status"], r["steps"]) for r in rows] == [
        (name, "finished", "20") for name in names
    ]
    assert "| 0.03 | 2 |" in (root / "report.md").read_text()  # 2 seeds averaged

    assert run_sweep(spec, points, root).line() == "0 finished, 0 failed, 4 skipped"

    # A point killed after its last checkpoint, before its test row, resumes to the same record.
    before = metrics_without_timing(root / names[1])
    metrics = root / names[1] / "metrics.jsonl"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:-1]))
    (root / names[1] / "summary.json").unlink()
    assert run_sweep(spec, points, root).line() == "1 finished, 0 failed, 3 skipped"
    assert metrics_without_timing(root / names[1]) == before

    # A new seed runs programs identical to seed 0's: all come from the compilation cache.
    events = collections.Counter()
    listener = lambda event, **_: events.update([event])  # noqa: E731
    jax.monitoring.register_event_listener(listener)
    try:
        more = _points(
            _experiment(
                tmp_path,
                "chain(" + _sweep_of(points) + ", [{'optimizer.learning_rate': 1e-2, 'seed': 2}])",
            )
        )
        assert run_sweep(spec, more, root).line() == "1 finished, 0 failed, 4 skipped"
    finally:
        jax.monitoring.unregister_event_listener(listener)
    assert events["/jax/compilation_cache/cache_misses"] == 0
    assert events["/jax/compilation_cache/cache_hits"] >= 3  # init, train step, eval step


def _sweep_of(points) -> str:
    return repr([point.overrides for point in points])


@pytest.mark.slow
@pytest.mark.multiprocess
def test_cli_records_a_failing_point_finishes_the_others_and_retries_it(tmp_path):
    # The last point's batch is larger than the training split, so its loop raises.
    spec = _experiment(
        tmp_path,
        "[{'optimizer.learning_rate': 1e-2}, {'data.batch_size': 5000}]",
    )
    command = ["--config=" + spec, f"--workdir={tmp_path / 'sweep'}", "--parallel=2", *TINY_FLAGS]
    first = run_module("launch.sweep", *command)
    assert first.returncode == 1, first.stderr
    assert first.stdout.splitlines()[-1].startswith("1 finished, 1 failed, 0 skipped in ")
    progress = r"\(1/2 points done, ETA [\d:]+\)\n.*\(2/2 points done, ETA 0:00:00\)"
    assert re.search(progress, first.stdout), first.stdout
    failed = tmp_path / "sweep" / "001-bs=5000"
    assert (
        "data.batch_size=5000 is larger than the training split"
        in (failed / "error.txt").read_text()
    )
    assert "| 001-bs=5000 | failed |" in (tmp_path / "sweep" / "report.md").read_text()
    assert (tmp_path / "sweep" / "000-lr=0.01" / "summary.json").exists()

    (failed / "error.txt").write_text("stale\n")
    again = run_module("launch.sweep", *command)
    assert again.returncode == 1
    assert again.stdout.splitlines()[-1].startswith("0 finished, 1 failed, 1 skipped in ")
    assert "larger than the training split" in (failed / "error.txt").read_text()  # retried


@pytest.mark.slow
@pytest.mark.multiprocess
def test_slurm_executor_through_submitits_local_cluster(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the array task runs launch.train from the working directory
    spec = _experiment(tmp_path, "[{'optimizer.learning_rate': 1e-2}]")
    slurm = SlurmOptions(cluster="local", timeout_min=5, cpus_per_task=1)
    outcome = run_sweep(
        spec,
        _points(spec),
        tmp_path / "sweep",
        "slurm",
        slurm=slurm,
        overrides={key: repr(value) for key, value in TINY.items()},
    )
    assert outcome.line() == "1 finished, 0 failed, 0 skipped"
    summary = json.loads((tmp_path / "sweep" / "000-lr=0.01" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 1294 // 64
    assert list((tmp_path / "sweep" / "slurm_logs").glob("*_0_log.out"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def slurm_cluster(tmp_path, monkeypatch):
    """A one-node SLURM cluster on this machine (Debian's slurm-wlm and munge), torn down after."""
    daemons = ("slurmctld", "slurmd", "sbatch", "sinfo", "munge")
    missing = [name for name in daemons if not shutil.which(name, path="/usr/sbin:/usr/bin")]
    if missing or os.geteuid() != 0:
        pytest.skip(f"needs root and slurmctld, slurmd, slurm-client, munge (missing {missing})")
    if subprocess.run(["munge", "-n"], capture_output=True, timeout=30).returncode:
        pytest.skip("munged is not running (start it: runuser -u munge -- /usr/sbin/munged)")
    host, state = socket.gethostname(), tmp_path / "slurm"
    state.mkdir()
    conf = state / "slurm.conf"
    conf.write_text(
        f"ClusterName=test\nSlurmctldHost={host}\nSlurmUser=root\nSlurmdUser=root\n"
        f"AuthType=auth/munge\nStateSaveLocation={state}\nSlurmdSpoolDir={state}/spool\n"
        f"SlurmctldPidFile={state}/ctld.pid\nSlurmdPidFile={state}/d.pid\n"
        f"SlurmctldPort={_free_port()}\nSlurmdPort={_free_port()}\n"
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
        "JobAcctGatherType=jobacct_gather/none\nSelectType=select/cons_tres\n"
        "SelectTypeParameters=CR_CPU\nReturnToService=2\n"
        f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN\n"
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    logs = (state / "daemons.log").open("w")
    started = [
        subprocess.Popen(
            [shutil.which(name, path="/usr/sbin"), "-D", "-f", str(conf)],
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
        for name in ("slurmctld", "slurmd")
    ]
    try:
        for _ in range(60):
            nodes = subprocess.run(
                ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30
            )
            if nodes.stdout.strip() == "idle":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the test SLURM node never became idle: {nodes.stdout}{nodes.stderr}")
        yield
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)
        logs.close()


@pytest.mark.slow
@pytest.mark.multiprocess
def test_slurm_executor_on_a_real_single_node_cluster(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    spec = _experiment(tmp_path, "[{'optimizer.learning_rate': 1e-2}]")
    outcome = run_sweep(
        spec,
        _points(spec),
        tmp_path / "sweep",
        "slurm",
        slurm=SlurmOptions(cluster="slurm", timeout_min=5, cpus_per_task=1),
        overrides={key: repr(value) for key, value in TINY.items()},
    )
    assert outcome.line() == "1 finished, 0 failed, 0 skipped"
    assert list((tmp_path / "sweep" / "slurm_logs").glob("*_submission.sh"))
