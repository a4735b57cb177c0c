"""Experiment configs: load an experiment file, apply dotted overrides with type checks, compare.

One mechanism serves the command line (`--config.KEY=VALUE`), sweeps and resume checks, so an
unknown key or a wrong type is the same clear `UserError` everywhere, before any compute starts.
"""

import ast
import difflib
import importlib.util
import json
import pathlib
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

from research.errors import UserError

DEFAULT_EXPERIMENT = "experiments/digits_lenet.py"
REQUIRED_KEYS = ("seed", "optimizer.learning_rate", "data.batch_size", "train.num_epochs")


def base_config(name: str) -> ml_collections.ConfigDict:
    """The fields every experiment has, with defaults; an experiment file changes what it needs."""
    return ml_collections.ConfigDict(
        {
            "name": name,
            "seed": 0,
            "init_from": placeholder(str),
            "data": {
                "name": "digits",
                "path": placeholder(str),
                "batch_size": 128,
                "eval_batch_size": 512,
                "validation_fraction": 0.1,
                "tfds_data_dir": placeholder(str),
                "download": False,
            },
            "model": {"name": "mlp"},
            "task": {
                "name": "classification",
                "loss": "cross_entropy",
                "label_smoothing": 0.0,
                "augment": "none",
                "crop_padding": 4,
            },
            "optimizer": {
                "name": "adam",
                "learning_rate": 1e-3,
                "momentum": 0.9,
                "weight_decay": 0.0,
                "schedule": "constant",
                "warmup_epochs": 0.0,
                "decay_epochs": (),
                "decay_factor": 0.1,
                "grad_clip_norm": 0.0,
                # > 0: evaluate, checkpoint-select and sample with an exponential moving
                # average of the parameters (Polyak averaging) at this decay, e.g. 0.999.
                "ema_decay": 0.0,
            },
            "train": {
                "num_epochs": 10,
                "patience": 0,
                "checkpoint_every_steps": 0,
                "keep_checkpoints": 2,
                # > 0: adversarial training on the model's embeddings, a perturbation of this
                # L2 norm per example (steps.make_train_step); twice the compute per step.
                "adversarial_epsilon": 0.0,
            },
            # Batch split over data x fsdp devices; with fsdp > 1 every state leaf of at least
            # fsdp_min_size elements is sharded along its largest dimension divisible by fsdp,
            # except leaves whose path ("params/Dense_0/kernel") matches a `replicate` regex.
            "mesh": {"data": -1, "fsdp": 1, "fsdp_min_size": 1024, "replicate": ()},
        }
    )


def load_module(path: str):
    """Imports an experiment file by path, so experiments need not be an installed package."""
    file = pathlib.Path(path)
    if not file.is_file():
        known = sorted(str(p) for p in pathlib.Path("experiments").glob("[!_]*.py"))
        raise UserError(
            f"Experiment file {path!r} does not exist. Pass --config=experiments/NAME.py[:ARG] "
            f"with an existing file, e.g. one of: {', '.join(known)}."
        )
    spec = importlib.util.spec_from_file_location(f"experiment_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"Experiment file {path!r} defines no get_config(arg=None); add one.")
    return module


def load(spec: str) -> ml_collections.ConfigDict:
    """Returns the locked config of `experiments/NAME.py[:ARG]`."""
    path, _, arg = spec.partition(":")
    config = load_module(path).get_config(arg or None)
    missing = [key for key in REQUIRED_KEYS if not has_key(config, key)]
    if missing:
        raise UserError(f"Experiment {path!r} lacks the required config keys {missing}.")
    config.lock()
    return config


def has_key(config: ml_collections.ConfigDict, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            return False
        node = node[part]
    return True


def _parse_value(text: str, field_type: type) -> Any:
    """Parses a command-line string into the declared type of the field it replaces."""
    if field_type is str:
        return text
    if field_type is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if field_type is type(None):
            return text  # An untyped optional field takes a bare word as a string.
        raise ValueError(f"{text!r} is not a Python literal") from None
    return value


def _check_type(value: Any, field_type: type) -> Any:
    """Refuses what ConfigDict would silently coerce, such as True for a learning rate."""
    if field_type in (int, float) and isinstance(value, bool):
        raise TypeError(f"expected a {field_type.__name__}, got a bool")
    if field_type is float and isinstance(value, int):
        return float(value)
    return value


def override(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
    """Sets `config.<dotted>` to `value` (a string from a flag is parsed to the field's type)."""
    *parents, leaf = dotted.split(".")
    node = config
    for depth, part in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or part not in node:
            raise _unknown_key(config, ".".join(parents[: depth + 1]), dotted)
        node = node[part]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise _unknown_key(config, dotted, dotted)
    current = node[leaf]
    if isinstance(current, ml_collections.ConfigDict):
        fields = ", ".join(f"{dotted}.{key}" for key in current)
        raise UserError(f"Config key {dotted!r} is a group; set one of its fields: {fields}.")
    field_type = node.get_type(leaf)
    try:
        if isinstance(value, str):
            value = _parse_value(value, field_type)
        node[leaf] = _check_type(value, field_type)
    except (ValueError, TypeError) as error:
        raise UserError(
            f"Config key {dotted!r} got {value!r}, which is not a valid "
            f"{field_type.__name__} (the default is {current!r}): {error}. "
            f"Pass a value of that type, e.g. --config.{dotted}={current!r}."
        ) from None


def _unknown_key(config: ml_collections.ConfigDict, prefix: str, dotted: str) -> UserError:
    siblings = sorted(flatten(config))
    leaf = dotted.split(".")[-1]
    close = [key for key in siblings if key.split(".")[-1] == leaf]
    close += difflib.get_close_matches(dotted, siblings, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UserError(
        f"Unknown config key {dotted!r} (no field {prefix!r} in this experiment's config).{hint} "
        f"Known keys: {', '.join(siblings)}."
    )


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> None:
    for dotted, value in overrides.items():
        override(config, dotted, value)


def flatten(config: ml_collections.ConfigDict | dict, prefix: str = "") -> dict[str, Any]:
    """Maps every leaf to its dotted key: {"optimizer.learning_rate": 0.1, ...}."""
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict | dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def differences(saved: dict, config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
    """Keys whose value in a saved config.json differs from `config`: {key: (saved, new)}."""
    old = flatten(saved)
    new = flatten(json.loads(to_json(config)))
    return {
        key: (old.get(key, "<absent>"), new.get(key, "<absent>"))
        for key in sorted(old.keys() | new.keys())
        if old.get(key, "<absent>") != new.get(key, "<absent>")
    }
