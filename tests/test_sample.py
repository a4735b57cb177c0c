"""Tests of `launch.sample`: reproducible per seed, respects the prompt, clear errors."""

import pathlib
import re
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


@pytest.mark.parametrize(
    "prompt, length, temperature, seed, words",
    [
        ("a", -1, 1.0, 0, "length=-1, but it must be an integer >= 0"),
        ("a", 5, 0.0, 0, "temperature=0.0, but it must be a number > 0"),
        ("a", 5, float("nan"), 0, "temperature=nan"),
        ("a", 5, 1.0, 2**40, "seed=1099511627776, but it must be an integer in [0, "),
        ("", 5, 1.0, 0, "The prompt is empty"),
    ],
)
def test_bad_settings_are_refused_before_the_workdir_is_read(
    tmp_path, prompt, length, temperature, seed, words
) -> None:
    with pytest.raises(UserError, match=re.escape(words)):
        generate(tmp_path / "nowhere", prompt, length, temperature, seed)


def fake_workdir(root: pathlib.Path, config: str, best_steps: tuple[str, ...] = ()) -> str:
    """A workdir with `config` as config.json and checkpoints/best holding `best_steps`."""
    (root / "config.json").write_text(config)
    for step in best_steps:
        (root / "checkpoints" / "best" / step).mkdir(parents=True)
    (root / "checkpoints" / "best").mkdir(parents=True, exist_ok=True)
    return str(root)


@pytest.mark.parametrize(
    "config, words",
    [
        ('{"model": {"name": "lenet"}}', "trained 'lenet', not a language model"),
        ('{"model": {"name": "rnn_lm"}}', "has no best checkpoint yet"),  # killed in epoch 1
        ('{"model": ', "config.json' is damaged"),
    ],
)
def test_a_workdir_that_cannot_sample_is_explained(tmp_path, config, words) -> None:
    with pytest.raises(UserError, match=re.escape(words)):
        generate(fake_workdir(tmp_path, config), "a", 5, 1.0, seed=0)


def test_the_command_exits_2_with_one_paragraph(tmp_path) -> None:
    workdir = fake_workdir(tmp_path, '{"model": {"name": "mlp"}}', ("40",))
    result = run_module("launch.sample", f"--workdir={workdir}", "--temperature=0", timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "temperature=0.0, but it must be a number > 0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
