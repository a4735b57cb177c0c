"""Lifecycle features under both sweep executors from one test body: a diverging point stops
alone, `init_from` reaches every point, and a vmapped point's workdir serves `launch.sample`."""

import json
import re
from pydoc_data.topics import topics

import jax
import numpy as np
import pytest
from conftest import ROOT, run_module

from research import config as config_lib
from research.sampling import generate
from research.sweep import axis, expand
from research.sweep_run import run_sweep
from research.train.transfer import restore_best_params

EXECUTORS = ("local", "vmap")


def lm_config(corpus, **overrides):
    """A one-epoch character LSTM on `corpus`, small enough for seconds."""
    config = config_lib.load(str(ROOT / "experiments" / "text_lstm.py"))
    config.unlock()
    small = {"data.name": "text_file", "data.path": str(corpus), "data.seq_len": 32,
             "model.hidden_size": 32, "model.embed_dim": 16, "train.num_epochs": 1}  # fmt: skip
    config_lib.apply_overrides(config, {**small, **overrides})
    config.lock()
    return config


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join(map(topics.get, sorted(topics)))[:20_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lm_group(tmp_path_factory, corpus):
    """Two seeds of a character LM trained as one vmapped group: (sweep root, points)."""
    root = tmp_path_factory.mktemp("lm_group")
    points = expand(lm_config(corpus), axis("seed", [0, 1]))
    assert run_sweep("lm.py", points, root, "vmap").line() == "2 finished, 0 failed, 0 skipped"
    return root, points


@pytest.mark.parametrize("executor", EXECUTORS)
def test_a_diverging_point_stops_alone_and_the_others_finish(executor, make_config, tmp_path):
    # Plain SGD at 1e38 overflows the logits to inf in the first epoch (20 steps): the loss is NaN.
    config = make_config(**{"optimizer.name": "sgd"})
    points = expand(config, axis("optimizer.learning_rate", [0.1, 1e38]))
    outcome = run_sweep("digits.py", points, tmp_path, executor)
    assert outcome.line() == "1 finished, 1 failed, 0 skipped"
    healthy, diverged = (tmp_path / point.name for point in points)
    error = (diverged / "error.txt").read_text()
    assert re.search(r"diverged by step 20: .* epoch 1 \(steps 1-20\) is nan", error), error
    assert (diverged / "metrics.jsonl").read_text() == ""
    summary = json.loads((healthy / "summary.json").read_text())
    assert (summary["status"], summary["epochs"]) == ("finished", 2)
    assert summary["test"]["accuracy"] > 0.5


@pytest.mark.parametrize("executor", EXECUTORS)
def test_init_from_copies_the_shared_groups_into_every_point(executor, lm_group, corpus, tmp_path):
    root, points = lm_group
    source = root / points[0].name
    # At learning rate 0 training leaves the parameters where init_from put them.
    config = lm_config(corpus, init_from=str(source), **{"optimizer.learning_rate": 0.0})
    finetuned = expand(config, axis("seed", [0, 1]))
    outcome = run_sweep("lm.py", finetuned, tmp_path, executor)
    assert outcome.line() == "2 finished, 0 failed, 0 skipped"
    _, _, expected = restore_best_params(source)
    assert len(jax.tree.leaves(expected)) >= 4
    for point in finetuned:
        _, _, got = restore_best_params(tmp_path / point.name)
        jax.tree.map(np.testing.assert_array_equal, got, expected)


def test_launch_sample_reads_any_point_of_a_vmapped_group(lm_group):
    root, points = lm_group
    workdirs = [root / point.name for point in points]
    result = run_module("launch.sample", f"--workdir={workdirs[1]}", "--prompt=The ", "--seed=3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The ")
    texts = [generate(workdir, "The ", 60, 0.8, seed=3) for workdir in workdirs]
    assert result.stdout[:-1] == generate(workdirs[1], "The ", 200, 1.0, seed=3)
    assert texts[0] != texts[1]  # two seeds, two models
