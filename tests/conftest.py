"""Shared fixtures: small configs of the real experiments, and a helper to run entry points."""

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import unittest.mock

# Tests and the processes they start compile many of the same programs: one persistent JAX
# cache (bounded, shared by the xdist workers, kept between runs) compiles each once. Set
# before JAX is imported; a test that needs its own cache sets jax_compilation_cache_dir.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "research-tests-jax-cache")
)
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

import pytest
from absl import logging

from research import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMING_FIELDS = ("examples_per_sec", "wall_time")

logging.set_verbosity(logging.WARNING)


@pytest.fixture
def make_config():
    """Returns config(experiment="digits_mlp", **dotted_overrides), small enough for seconds."""

    def make(experiment: str = "digits_mlp", **overrides):
        config = config_lib.load(str(ROOT / "experiments" / f"{experiment}.py"))
        small = {"train.num_epochs": 2, "data.batch_size": 64}
        if experiment == "digits_mlp":
            small["model.hidden_sizes"] = (16,)
        config.unlock()
        config_lib.apply_overrides(config, {**small, **overrides})
        config.lock()
        return config

    return make


@pytest.fixture
def tfds_dir():
    """The small TFDS datasets of tests/tiny_tfds.py, prepared on disk once per test process."""
    import tiny_tfds  # imports TensorFlow, which only the tests that use these need

    return tiny_tfds.prepared()


@contextlib.contextmanager
def mock_tfds(num_examples: int):
    """`tfds.testing.mock_data`, with batch reads repaired: TFDS 4.9.10's mock sets the data
    source's `__getitems__` (the batch read research.data uses) as a plain MagicMock attribute,
    so it is called without the `self` its function expects; its per-record read is correct."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.testing import mocking

    def getitems(*args, generator, serialized=False):
        keys = args[-1]  # (keys) as the mock calls it, or (self, keys)
        return [mocking._getitem(None, key, generator, serialized) for key in keys]

    with (
        unittest.mock.patch.object(mocking, "_getitems", getitems),
        tfds.testing.mock_data(num_examples=num_examples),
    ):
        yield


def run_module(module: str, *args: str, timeout: int = 300, env: dict | None = None, **kwargs):
    """Runs `python -m module args` from the repository root; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def metrics_without_timing(workdir: pathlib.Path) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]
