"""Tests of research/config.py: typed overrides from CLI strings, key errors, diffs and loading."""

import json

import ml_collections
import pytest

from research import config as cfg
from research.errors import UserError


@pytest.fixture
def config() -> ml_collections.ConfigDict:
    config = cfg.base_config("t")
    config.lock()
    return config


def _get(config: ml_collections.ConfigDict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize(
    "key, text, expected, kind",
    [
        ("seed", "3", 3, int),
        ("data.batch_size", "64", 64, int),
        ("optimizer.learning_rate", "1e-3", 0.001, float),
        ("optimizer.learning_rate", "3", 3.0, float),
        ("optimizer.momentum", "0.95", 0.95, float),
        ("data.download", "true", True, bool),
        ("data.download", "false", False, bool),
        ("data.download", "True", True, bool),
        ("optimizer.decay_epochs", "(16, 32)", (16, 32), tuple),
        ("model.name", "lenet", "lenet", str),
        ("optimizer.schedule", "cosine", "cosine", str),
        ("init_from", "runs/base/checkpoints", "runs/base/checkpoints", str),
        ("data.tfds_data_dir", "/data/tfds", "/data/tfds", str),
    ],
)
def test_override_parses_string_into_field_type(config, key, text, expected, kind) -> None:
    cfg.override(config, key, text)
    value = _get(config, key)
    assert type(value) is kind
    assert value == expected


def test_override_from_false_to_true_and_back(config) -> None:
    config.data.download = True
    cfg.override(config, "data.download", "false")
    assert config.data.download is False


def test_override_with_python_value_is_not_parsed(config) -> None:
    cfg.override(config, "optimizer.learning_rate", 0.25)
    cfg.override(config, "model.name", "123")  # a str field keeps digits as text
    assert config.optimizer.learning_rate == 0.25
    assert config.model.name == "123"


@pytest.mark.parametrize("key", ["init_from", "data.tfds_data_dir"])
def test_string_placeholder_accepts_digit_only_text(config, key) -> None:
    cfg.override(config, key, "2024")
    assert _get(config, key) == "2024"


@pytest.mark.parametrize("key", ["seed", "optimizer.learning_rate"])
def test_bool_text_for_a_number_field_is_refused(config, key) -> None:
    with pytest.raises(UserError, match=key):
        cfg.override(config, key, "True")


@pytest.mark.parametrize(
    "key, close",
    [
        ("train.learning_rate", "optimizer.learning_rate"),  # right leaf, wrong group
        ("optimzer.learning_rate", "optimizer.learning_rate"),  # typo in the group
        ("data.seed", "seed"),
    ],
)
def test_unknown_key_names_key_and_suggests_close_one(config, key, close) -> None:
    with pytest.raises(UserError) as error:
        cfg.override(config, key, "1")
    message = str(error.value)
    assert repr(key) in message
    assert f"Did you mean {close!r}?" in message


def test_unknown_key_typo_in_leaf_suggests_close_one(config) -> None:
    with pytest.raises(UserError, match=r"Did you mean 'optimizer.learning_rate'\?"):
        cfg.override(config, "optimizer.learning_rte", "0.1")


def test_unknown_key_leaves_config_unchanged(config) -> None:
    before = cfg.flatten(config)
    with pytest.raises(UserError):
        cfg.override(config, "optimizer.nope", "1")
    assert cfg.flatten(config) == before


@pytest.mark.parametrize(
    "key, text, default",
    [
        ("optimizer.learning_rate", "abc", "0.001"),
        ("seed", "3.5", "0"),
        ("data.batch_size", "lots", "128"),
        ("data.download", "maybe", "False"),
        ("train.num_epochs", "1e3", "10"),
    ],
)
def test_wrong_type_names_key_and_default(config, key, text, default) -> None:
    before = _get(config, key)
    with pytest.raises(UserError) as error:
        cfg.override(config, key, text)
    message = str(error.value)
    assert repr(key) in message
    assert f"the default is {default}" in message
    assert _get(config, key) == before


@pytest.mark.parametrize("group", ["optimizer", "data", "train"])
def test_setting_a_group_is_refused(config, group) -> None:
    with pytest.raises(UserError, match=f"'{group}' is a group") as error:
        cfg.override(config, group, "{}")
    assert f"{group}." in str(error.value)  # names the fields that can be set
    assert isinstance(config[group], ml_collections.ConfigDict)


def test_apply_overrides_sets_every_key(config) -> None:
    cfg.apply_overrides(config, {"seed": "7", "optimizer.name": "sgd", "data.batch_size": 16})
    assert (config.seed, config.optimizer.name, config.data.batch_size) == (7, "sgd", 16)


def test_differences_lists_exactly_the_changed_keys(config) -> None:
    saved = json.loads(cfg.to_json(config))
    assert cfg.differences(saved, config) == {}
    cfg.override(config, "optimizer.learning_rate", "0.1")
    cfg.override(config, "seed", "4")
    cfg.override(config, "optimizer.decay_epochs", "(3, 6)")
    assert cfg.differences(saved, config) == {
        "optimizer.learning_rate": (0.001, 0.1),
        "seed": (0, 4),
        "optimizer.decay_epochs": ([], [3, 6]),
    }


def test_differences_reports_keys_present_on_one_side_only(config) -> None:
    """...except a key the saved config lacks that is at its default now (a field added to
    the code after that run started)."""
    cfg.override(config, "optimizer.ema_decay", "0.5")
    saved = json.loads(cfg.to_json(config))
    saved["extra"] = 1
    del saved["data"]["download"]  # False now: the default
    del saved["optimizer"]["ema_decay"]  # 0.5 now: not the default
    assert cfg.differences(saved, config) == {
        "extra": (1, "<absent>"),
        "optimizer.ema_decay": ("<absent>", 0.5),
    }


def test_differences_after_json_round_trip_of_tuples_is_empty(config) -> None:
    cfg.override(config, "optimizer.decay_epochs", "(16, 32)")
    assert cfg.differences(json.loads(cfg.to_json(config)), config) == {}


@pytest.mark.parametrize("spec", ["experiments/nope.py", "experiments/nope.py:arg"])
def test_load_missing_file_names_the_path(spec, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="'experiments/nope.py' does not exist"):
        cfg.load(spec)


def test_load_file_without_get_config_is_refused(tmp_path) -> None:
    path = tmp_path / "empty.py"
    path.write_text("X = 1\n")
    with pytest.raises(UserError, match="defines no get_config"):
        cfg.load(str(path))


def test_load_reports_missing_required_keys(tmp_path) -> None:
    path = tmp_path / "partial.py"
    path.write_text(
        "import ml_collections\n"
        "def get_config(arg=None):\n"
        "    return ml_collections.ConfigDict({'seed': 0, 'data': {'batch_size': 8}})\n"
    )
    with pytest.raises(UserError) as error:
        cfg.load(str(path))
    assert "optimizer.learning_rate" in str(error.value)
    assert "train.num_epochs" in str(error.value)


def test_load_passes_arg_and_locks(tmp_path) -> None:
    path = tmp_path / "exp.py"
    path.write_text(
        "from research.config import base_config, parse_arg\n"
        "def get_config(arg=None):\n"
        "    config = base_config('exp')\n"
        "    config.data.name = parse_arg(arg, dataset='digits').dataset\n"
        "    return config\n"
    )
    config = cfg.load(f"{path}:dataset=mnist")
    assert config.data.name == "mnist"
    assert cfg.load(str(path)).data.name == "digits"
    with pytest.raises(AttributeError):
        config.new_field = 1


def test_base_config_has_the_sweepable_keys() -> None:
    config = cfg.base_config("t")
    assert cfg.REQUIRED_KEYS == (
        "seed",
        "optimizer.learning_rate",
        "data.batch_size",
        "train.num_epochs",
    )
    flat = cfg.flatten(config)
    for key in cfg.REQUIRED_KEYS:
        assert cfg.has_key(config, key)
        assert key in flat
    assert (flat["seed"], flat["data.batch_size"], flat["train.num_epochs"]) == (0, 128, 10)
    assert isinstance(flat["optimizer.learning_rate"], float)
    assert config.name == "t"


def test_has_key_rejects_missing_and_group_paths(config) -> None:
    assert not cfg.has_key(config, "optimizer.nope")
    assert not cfg.has_key(config, "seed.value")  # a leaf has no children
    assert cfg.has_key(config, "optimizer")
