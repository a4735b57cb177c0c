"""Profiler traces: `train.profile_steps` writes a jax.profiler trace of those steps into the
workdir and leaves every number of the run unchanged; a malformed --profile_steps exits 2."""

import gzip
import json

import pytest
from conftest import metrics_without_timing, run_module

from research.train.loop import train_and_evaluate
from research.train.profiling import operation_seconds


@pytest.mark.parametrize("per_dispatch", [1, 4])
def test_a_traced_run_writes_the_trace_and_the_same_numbers(make_config, tmp_path, per_dispatch):
    """With 4 steps per dispatch, steps 5-6 lie inside the dispatch of steps 4-7: it is traced."""
    summaries = {}
    for name, steps in (("plain", ()), ("traced", (5, 7))):
        config = make_config(
            **{
                "train.num_epochs": 1,
                "train.profile_steps": steps,
                "train.steps_per_dispatch": per_dispatch,
            }
        )
        summaries[name] = train_and_evaluate(config, tmp_path / name)
    traces = list((tmp_path / "traced" / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000
    operations = operation_seconds(tmp_path / "traced" / "profile")
    assert operations and all(seconds >= 0 for seconds in operations.values())
    assert not (tmp_path / "plain" / "profile").exists()
    assert metrics_without_timing(tmp_path / "plain") == metrics_without_timing(tmp_path / "traced")
    assert summaries["plain"]["test"] == summaries["traced"]["test"]


def test_a_malformed_profile_range_exits_2_naming_the_flag(tmp_path):
    result = run_module("launch.train", "--profile_steps=5:2", f"--workdir={tmp_path / 'w'}")
    assert result.returncode == 2 and "--profile_steps='5:2' is not START:END" in result.stderr
    assert not (tmp_path / "w").exists()


def test_bench_refuses_a_trace_past_its_timed_steps(tmp_path):
    result = run_module(
        "launch.bench", "--profile_steps=0:50", "--steps=5", f"--out={tmp_path / 'b.json'}"
    )
    assert (
        result.returncode == 2 and "--profile_steps ends after the 5 timed steps" in result.stderr
    )
    assert not (tmp_path / "b.json").exists()


def test_operation_seconds_counts_each_events_own_time(tmp_path):
    """A loop (`while`) whose body ran a fusion and a dot: the loop keeps only its own time;
    `fusion.3` is another fusion; the Python thread's events are not XLA operations."""
    xla, python = {"pid": 1, "tid": 7}, {"pid": 1, "tid": 8}
    events = [
        {"ph": "M", "name": "thread_name", **xla, "args": {"name": "tf_XLAPjRtCpuClient/1"}},
        {"ph": "M", "name": "thread_name", **python, "args": {"name": "python"}},
        {"ph": "X", "name": "while", "ts": 0, "dur": 100, **xla},
        {"ph": "X", "name": "fusion", "ts": 10, "dur": 20, **xla},
        {"ph": "X", "name": "dot", "ts": 40, "dur": 20, **xla},
        {"ph": "X", "name": "ThunkExecutor::Execute", "ts": 0, "dur": 100, **xla},
        {"ph": "X", "name": "fusion.3", "ts": 200, "dur": 5, **xla},
        {"ph": "X", "name": "PjitFunction(step)", "ts": 0, "dur": 300, **python},
    ]
    trace = tmp_path / "plugins" / "profile" / "run" / "host.trace.json.gz"
    trace.parent.mkdir(parents=True)
    with gzip.open(trace, "wt") as file:
        json.dump({"traceEvents": events}, file)
    assert operation_seconds(tmp_path) == pytest.approx(
        {"while": 60e-6, "fusion": 25e-6, "dot": 20e-6}
    )
