"""Tests of `launch.sample`: reproducible per seed, respects the prompt, clear errors."""

from pydoc_data.topics import topics

import pytest

from research import config as cfg
from research.errors import UserError
from research.sampling import generate
from research.train.loop import train_and_evaluate
from tests.conftest import ROOT, run_module


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> str:
    """A one-epoch character LSTM on a small text."""
    root = tmp_path_factory.mktemp("lm")
    corpus = root / "corpus.txt"
    corpus.write_text("\n\n".join(map(topics.get, sorted(topics)))[:20_000], encoding="utf-8")
    config = cfg.load(str(ROOT / "experiments" / "text_lstm.py"))
    config.unlock()
    overrides = {
        "data.name": "text_file",
        "data.path": str(corpus),
        "data.seq_len": 32,
        "model.hidden_size": 32,
        "model.embed_dim": 16,
        "train.num_epochs": 1,
    }
    cfg.apply_overrides(config, overrides)
    config.lock()
    train_and_evaluate(config, root / "run")
    return str(root / "run")


def test_the_command_is_reproducible_per_seed(workdir) -> None:
    args = ("--prompt=The ", "--length=60", "--temperature=0.8")
    result = run_module("launch.sample", f"--workdir={workdir}", *args, "--seed=3")
    assert result.returncode == 0, result.stderr
    text = result.stdout[:-1]  # print's newline
    assert text.startswith("The ") and 4 < len(text) <= 64
    assert text == generate(workdir, "The ", 60, 0.8, seed=3)  # same seed, another process
    assert text != generate(workdir, "The ", 60, 0.8, seed=4)


def test_a_tiny_temperature_is_greedy(workdir) -> None:
    assert generate(workdir, "in", 30, 1e-6, seed=0) == generate(workdir, "in", 30, 1e-6, seed=9)


def test_prompt_characters_outside_the_vocabulary_are_refused(workdir) -> None:
    with pytest.raises(UserError, match="characters the run's vocabulary lacks"):
        generate(workdir, "\u2603", 10, 1.0, seed=0)


def test_a_bad_workdir_exits_2_with_a_message(tmp_path) -> None:
    result = run_module("launch.sample", f"--workdir={tmp_path / 'nowhere'}")
    assert result.returncode == 2
    assert "is not the workdir of a finished run on text data" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "nowhere").exists()  # nothing is created there
