"""Tests of launch/bench.py: the JSON fields for a tiny model, and the compilation-cache hit."""

import json

import pytest
from conftest import run_module

from launch import bench


def test_peak_table_matches_device_kinds() -> None:
    assert bench.peak_flops("NVIDIA H200", "bfloat16") == 989e12
    assert bench.peak_flops("NVIDIA L40S", "bfloat16") == 362e12  # not the L4's
    assert bench.peak_flops("TPU v5 lite", "bfloat16") == 197e12  # v5e, not v5p
    assert bench.peak_flops("TPU v4", "float32") is None
    assert bench.peak_flops("cpu", "float32") is None


def test_fake_dataset_has_the_requested_shapes() -> None:
    dataset = bench.fake_dataset(4, (5, 6, 3), 7)
    assert dataset.splits["train"]["image"].shape == (16, 5, 6, 3)
    assert dataset.info["num_classes"] == 7 and dataset.info["input_shape"] == (5, 6, 3)


@pytest.mark.slow
def test_bench_writes_its_fields_and_a_second_run_hits_the_cache(tmp_path) -> None:
    out, cache = tmp_path / "bench.json", tmp_path / "cache"
    args = (
        "--config=experiments/digits_lenet.py",
        "--steps=3",
        "--warmup_steps=1",
        f"--out={out}",
        f"--cache_dir={cache}",
        "--config.model.features=(8, 16)",
    )
    runs = []
    for _ in range(2):
        result = run_module("launch.bench", *args)
        assert result.returncode == 0, result.stderr
        assert "flops_per_example" in result.stdout
        runs.append(json.loads(out.read_text()))
    first, second = runs
    assert first["experiment"] == "digits_lenet" and first["batch_size"] == 32
    assert first["overrides"] == {"model.features": "(8, 16)"}
    assert first["flops_per_example"] > 1e4
    assert first["synthetic_examples_per_sec"] > 0 and first["pipeline_examples_per_sec"] > 0
    assert first["pipeline_over_synthetic"] > 0 and first["input_ms_per_batch"] > 0
    assert first["achieved_flops_per_sec"] > 0
    assert first["mfu"] is None and first["peak_flops_per_sec"] is None  # CPU: no known peak
    assert not first["compile_cache_hit"] and any(cache.iterdir())
    assert second["compile_cache_hit"]
    assert second["uncached_compile_time_s"] == first["compile_time_s"]
    assert second["compile_time_saved_s"] == first["compile_time_s"] - second["compile_time_s"]
    assert second["flops_per_example"] == first["flops_per_example"]


def test_unusable_counts_are_refused_before_anything_is_built(tmp_path) -> None:
    flags = ("--steps=0", "--warmup_steps=-1", "--batch_size=0", "--fake_data", "--fake_classes=0")
    out = tmp_path / "bench.json"
    result = run_module("launch.bench", *flags, "--fake_shape=a,3", f"--out={out}", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for words in (*flags[:3], flags[4], "--fake_shape=a,3 must be positive integers", ">= 1"):
        assert words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
