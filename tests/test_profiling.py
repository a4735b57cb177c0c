"""Profiler traces: `train.profile_steps` writes a jax.profiler trace of those steps into the
workdir and leaves every number of the run unchanged; a malformed --profile_steps exits 2."""

from conftest import metrics_without_timing, run_module

from research.train.loop import train_and_evaluate


def test_a_traced_run_writes_the_trace_and_the_same_numbers(make_config, tmp_path):
    summaries = {}
    for name, steps in (("plain", ()), ("traced", (3, 6))):
        config = make_config(**{"train.num_epochs": 1, "train.profile_steps": steps})
        summaries[name] = train_and_evaluate(config, tmp_path / name)
    traces = list((tmp_path / "traced" / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 1000
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
