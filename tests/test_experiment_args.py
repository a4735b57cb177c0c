"""Tests of the `:ARG` grammar (`config.parse_arg`): typed key=value pairs, one clear error for
anything else, and every experiment file declaring exactly the keys it takes."""

import json
import pathlib

import pytest
from conftest import ROOT, run_module

from research import config as cfg
from research.errors import UserError

EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if p.name != "__init__.py")
QUICK = ("quick (default False)", "quick=true")
# The files that take an argument: what their error lists, and an argument that changes the config.
TAKES = {
    "cifar10_plain20": ("subset (default False)", "subset=true"),
    "cifar10_resnet18": ("subset (default False)", "subset=true"),
    "cifar10_resnet20": ("subset (default False)", "subset=1"),
    "imagenet_resnet50": ("image_size (default 224), depth (default 50)", "image_size=32"),
    "mnist_lenet": ("dataset (default 'mnist')", "dataset=fashion_mnist"),
    "shakespeare_lstm": ("path (default '')", "path=in.txt"),
    "shakespeare_transformer": ("path (default '')", "path=in.txt"),
    "sst2_bert": ("path (default '')", "path=/data/sst2"),
    "sst2_lstm": ("path (default '')", "path=/data/sst2"),
    "sst2_lstm_lm": ("path (default '')", "path=/data/sst2"),
    "text_bert_mlm": ("sst2 (default False), path (default '')", "sst2=true"),
    "text_lstm": ("cell (default 'lstm')", "cell=rnn"),
    **{p.stem: QUICK for p in EXPERIMENTS if p.stem.startswith("lecture_")},
}
DEFAULTS = {"flag": False, "steps": 2, "rate": 0.5, "name": "x"}


def test_no_argument_gives_the_defaults() -> None:
    assert cfg.parse_arg(None, **DEFAULTS).to_dict() == DEFAULTS
    assert cfg.parse_arg("", **DEFAULTS).to_dict() == DEFAULTS
    assert cfg.parse_arg(None).to_dict() == {}


def test_values_take_the_type_of_their_default() -> None:
    arg = cfg.parse_arg("flag=true,steps=7,rate=1e-3,name=a=b", **DEFAULTS)
    assert arg.to_dict() == {"flag": True, "steps": 7, "rate": 1e-3, "name": "a=b"}
    assert type(arg.rate) is float and type(arg.steps) is int
    assert cfg.parse_arg("rate=2", **DEFAULTS).rate == 2.0
    assert cfg.parse_arg("name=", **DEFAULTS).name == ""
    for text, value in [("true", True), ("1", True), ("False", False), ("0", False)]:
        assert cfg.parse_arg(f"flag={text}", **DEFAULTS).flag is value
    with pytest.raises(AttributeError):
        cfg.parse_arg("steps=3", **DEFAULTS).steps = 4  # frozen: read-only like the config


@pytest.mark.parametrize(
    "arg, problem",
    [
        ("stepz=3", "unknown key 'stepz'"),
        ("flag", "'flag' is not key=value"),
        ("steps=3,", "'' is not key=value"),
        ("steps=1.5", "steps='1.5' is not a valid int"),
        ("rate=fast", "rate='fast' is not a valid float"),
        ("flag=maybe", "flag='maybe' is not a valid bool (true, false, 1 or 0)"),
    ],
)
def test_a_bad_argument_names_the_problem_and_the_keys(arg: str, problem: str) -> None:
    with pytest.raises(UserError) as error:
        cfg.parse_arg(arg, **DEFAULTS)
    message = str(error.value)
    assert f"Bad experiment argument ':{arg}': {problem}." in message
    keys = "flag (default False), steps (default 2), rate (default 0.5), name (default 'x')"
    assert keys in message
    assert "e.g. --config=FILE.py:flag=true." in message


def test_a_file_without_keys_refuses_any_argument() -> None:
    with pytest.raises(UserError, match=r"takes no argument, got ':quick=true'\. Drop it"):
        cfg.parse_arg("quick=true")


def test_the_table_names_only_experiment_files() -> None:
    assert set(TAKES) <= {p.stem for p in EXPERIMENTS}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_declares_its_keys(path: pathlib.Path) -> None:
    module = cfg.load_module(str(path))
    default = module.get_config()
    takes, example = TAKES.get(path.stem, ("takes no argument", None))
    with pytest.raises(UserError) as error:
        module.get_config("no_such_key=1")
    assert takes in str(error.value)
    if example:
        saved = json.loads(cfg.to_json(default))
        assert cfg.differences(saved, module.get_config(example)), example


@pytest.mark.slow
def test_cli_refuses_a_bad_argument_before_any_compute(tmp_path: pathlib.Path) -> None:
    workdir = tmp_path / "run"
    result = run_module(
        "launch.train",
        "--config=experiments/digits_lenet.py:bogus=1",
        f"--workdir={workdir}",
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "error: This experiment takes no argument, got ':bogus=1'." in result.stderr
    assert not workdir.exists()
