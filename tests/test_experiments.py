"""Tests that every experiment file loads, has the required keys, and sweeps over valid points."""

import pathlib

import pytest

from research import config as cfg
from research import sweep as sweeps
from research.models import MODELS, build_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if p.name != "__init__.py")
DIGITS_TRAIN_SIZE = 1294  # digits train split with the default validation_fraction


def _sweep(path: pathlib.Path) -> list[dict]:
    return cfg.load_module(str(path)).sweep()


def test_the_experiments_are_found() -> None:
    assert {p.stem for p in EXPERIMENTS} >= {"digits_lenet", "digits_mlp", "mnist_lenet"}


@pytest.fixture(params=EXPERIMENTS, ids=lambda p: p.stem)
def experiment(request) -> tuple[pathlib.Path, object]:
    return request.param, cfg.load(str(request.param))


def test_loads_locked_with_required_keys(experiment) -> None:
    path, config = experiment
    for key in cfg.REQUIRED_KEYS:
        assert cfg.has_key(config, key), (path.name, key)
    assert config.name == path.stem  # run records are named after the file
    with pytest.raises(AttributeError):
        config.not_a_field = 1  # locked: a typo cannot add a key


def test_model_config_builds_a_registered_model(experiment) -> None:
    _, config = experiment
    assert config.model.name in MODELS
    kwargs = {key: value for key, value in config.model.items() if key != "name"}
    model = build_model(config.model.name, **kwargs)  # unknown fields raise TypeError
    assert all(hasattr(model, key) for key in kwargs)


def test_sweep_expands_into_valid_points(experiment) -> None:
    path, config = experiment
    points = _sweep(path)
    assert isinstance(points, list) and points
    assert all(isinstance(point, dict) and point for point in points)
    expanded = sweeps.expand(config, points)  # raises on unknown keys or wrong types
    assert len(expanded) == len(points)
    assert len({point.name for point in expanded}) == len(points)
    for point in expanded:
        flat = cfg.flatten(point.config)
        for key, value in point.overrides.items():
            assert flat[key] == value
            assert type(flat[key]) is type(cfg.flatten(config)[key])


def test_seed_is_swept_everywhere(experiment) -> None:
    path, _ = experiment
    points = _sweep(path)
    assert all("seed" in point for point in points), path.name
    assert len({point["seed"] for point in points}) >= 2  # seeds are a replicate axis


DIGITS_EXPERIMENTS = [p for p in EXPERIMENTS if cfg.load(str(p)).data.name == "digits"]


@pytest.mark.parametrize("path", DIGITS_EXPERIMENTS, ids=lambda p: p.stem)
def test_digits_sweeps_fit_the_training_split(path) -> None:
    config = cfg.load(str(path))
    batch_sizes = [p.get("data.batch_size", config.data.batch_size) for p in _sweep(path)]
    assert max(batch_sizes + [config.data.batch_size]) <= DIGITS_TRAIN_SIZE


def test_default_experiment_is_digits_lenet(monkeypatch) -> None:
    assert cfg.DEFAULT_EXPERIMENT == "experiments/digits_lenet.py"
    monkeypatch.chdir(ROOT)
    config = cfg.load(cfg.DEFAULT_EXPERIMENT)
    assert config.data.name == "digits"  # runs offline
    assert config.model.name == "lenet"
    assert tuple(config.model.padding) == ("SAME", "SAME")  # fits 8x8 images


def test_mnist_lenet_arg_selects_the_dataset() -> None:
    path = ROOT / "experiments" / "mnist_lenet.py"
    assert cfg.load(f"{path}:dataset=fashion_mnist").data.name == "fashion_mnist"
    assert cfg.load(str(path)).data.name == "mnist"
