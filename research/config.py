"""Experiment configs: the base fields with their allowed values; load an experiment file, parse
its `:ARG`, apply dotted overrides with type checks, compare.

One mechanism serves the command line (`--config.KEY=VALUE`), sweeps and resume checks, so an
unknown key or a wrong type is the same clear `UserError` everywhere, before any compute starts;
research.validation checks every value against the declarations here.
"""

import ast
import difflib
import importlib.util
import json
import pathlib
import re
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder

from research.checks import (
    FRACTION,
    PATH,
    TEXT,
    Check,
    integer,
    number,
    one_of,
    optional,
    tuple_of,
)
from research.errors import UserError

DEFAULT_EXPERIMENT = "experiments/digits_lenet.py"
REQUIRED_KEYS = ("seed", "optimizer.learning_rate", "data.batch_size", "train.num_epochs")


def _is_regex(pattern: Any) -> bool:
    try:
        re.compile(pattern)
    except (re.error, TypeError):
        return False
    return True


def _warmup(config: ml_collections.ConfigDict) -> str:
    return f"a number from 0 to train.num_epochs ({config.train.num_epochs}), the run's length"


def _decay_epochs(config: ml_collections.ConfigDict) -> str:
    return (
        f"a tuple of epochs, each above optimizer.warmup_epochs ({config.optimizer.warmup_epochs}) "
        f"and below train.num_epochs ({config.train.num_epochs})"
    )


def _in_run(value: Any, config: ml_collections.ConfigDict) -> bool:
    return number(0, config.train.num_epochs).ok(value, config)


def _decays_in_run(value: Any, config: ml_collections.ConfigDict) -> bool:
    """Only the step schedule reads the decay epochs (an experiment that switches to another
    may leave its step recipe's epochs behind)."""
    low, high = config.optimizer.warmup_epochs, config.train.num_epochs
    return isinstance(value, list | tuple) and (
        config.optimizer.schedule != "step"
        or all(number().ok(epoch, config) and low < epoch < high for epoch in value)
    )


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
                # Where a TFDS or image-folder split is decoded to: "memory" (once, at start),
                # "disk" (read by index each step) or "auto" (memory up to 4 GiB decoded).
                "storage": "auto",
                # Batches prepared in a background thread while the device computes (0: none).
                "prefetch": 2,
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
                # > 1: each step's gradient is the mean of this many micro-batches' (one in
                # memory at a time), so a batch too large for the device trains the same.
                "grad_accum_steps": 1,
                # (start, end): a jax.profiler trace of steps start to end - 1 into
                # WORKDIR/profile (`launch.train --profile_steps=START:END`).
                "profile_steps": (),
                # > 1: one call to the device runs up to this many steps (a scan over as many
                # batches placed at once), for models so small that the host's per-step
                # work outweighs the step; checkpoints, stop signals and epochs still land
                # on the same steps.
                "steps_per_dispatch": 1,
            },
            # Batch split over data x fsdp devices; with fsdp > 1 every state leaf of at least
            # fsdp_min_size elements is sharded along its largest dimension divisible by fsdp,
            # except leaves whose path ("params/Dense_0/kernel") matches a `replicate` regex.
            "mesh": {"data": -1, "fsdp": 1, "fsdp_min_size": 1024, "replicate": ()},
            # Besides metrics.jsonl and TensorBoard: a Weights & Biases run in WORKDIR/wandb when
            # a project is named (`pip install -e ".[wandb]"`), offline unless mode "online".
            "log": {"wandb_project": placeholder(str), "wandb_mode": "offline"},
        }
    )


# The allowed values of every field of `base_config`. Names of registered things (data.name, an
# unregistered name being a TFDS dataset, model.name, task.name, task.augment, optimizer.name and
# optimizer.schedule) are checked by their registry; task.loss by the tasks that read it; model
# fields by the model; fields a component reads beyond these by that component (Registry.declare).
FIELDS: dict[str, Check] = {
    "name": TEXT,
    "seed": integer(0, 2**31 - 1),  # a sweep stacks seeds as int32
    "init_from": optional(
        Check("the workdir of a finished run", lambda v, c: pathlib.Path(v).is_dir())
    ),
    "data.name": TEXT,
    "data.path": PATH,
    "data.batch_size": integer(1),
    "data.eval_batch_size": integer(1),
    "data.validation_fraction": number(0, 1, open_low=True, open_high=True),
    "data.tfds_data_dir": optional(TEXT),
    "data.download": Check("true or false", lambda v, c: isinstance(v, bool)),
    "data.storage": one_of("auto", "memory", "disk"),
    "data.prefetch": integer(0),
    "model.name": TEXT,
    "task.name": TEXT,
    "task.label_smoothing": FRACTION,
    "task.augment": TEXT,
    "task.crop_padding": integer(0),
    "optimizer.name": TEXT,
    "optimizer.learning_rate": number(0),  # 0 trains nothing: evaluates the initial parameters
    "optimizer.momentum": FRACTION,
    "optimizer.weight_decay": number(0),
    "optimizer.schedule": TEXT,
    "optimizer.warmup_epochs": Check(_warmup, _in_run),
    "optimizer.decay_epochs": Check(_decay_epochs, _decays_in_run),
    "optimizer.decay_factor": number(0, 1, open_low=True, open_high=True),
    "optimizer.grad_clip_norm": number(0),  # 0: no clipping
    "optimizer.ema_decay": FRACTION,  # 0: no average
    "train.num_epochs": integer(1),
    "train.patience": integer(0),  # 0: no early stopping
    "train.checkpoint_every_steps": integer(0),  # 0: at each epoch's end only
    "train.keep_checkpoints": integer(1),  # the latest must be kept to resume
    "train.adversarial_epsilon": number(0),  # 0: no adversarial training
    "train.profile_steps": Check(
        "() or (start, end) with 0 <= start < end, in steps",
        lambda v, c: v in ((), []) or (tuple_of(integer(0), 2).ok(v, c) and v[0] < v[1]),
    ),
    "train.grad_accum_steps": Check(
        lambda c: f"an integer >= 1 that divides data.batch_size ({c.data.batch_size})",
        lambda v, c: integer(1).ok(v, c) and c.data.batch_size % v == 0,
    ),
    "train.steps_per_dispatch": integer(1),
    "mesh.data": Check(
        "-1 (every device) or an integer >= 1", lambda v, c: v == -1 or integer(1).ok(v, c)
    ),
    "log.wandb_project": optional(
        Check(
            'a W&B project name, with wandb installed (pip install -e ".[wandb]")',
            lambda v, c: isinstance(v, str) and bool(v) and _installed("wandb"),
        )
    ),
    "log.wandb_mode": one_of("offline", "online"),
    "mesh.fsdp": integer(1),
    "mesh.fsdp_min_size": integer(0),
    "mesh.replicate": tuple_of(Check("a regular expression", lambda v, c: _is_regex(v))),
}


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


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


def parse_arg(
    arg: str | None, **defaults: bool | int | float | str
) -> ml_collections.FrozenConfigDict:
    """The `ARG` of `--config=FILE.py:ARG`: `key=value,key=value` over the keys an experiment
    declares, e.g. `arg = parse_arg(arg, quick=False)`; each default's type parses its value.

    `parse_arg(arg)` declares no keys, so a file that takes no argument refuses one.
    """
    values = dict(defaults)
    for item in arg.split(",") if arg else ():
        key, sep, text = item.partition("=")
        if not sep:
            raise _bad_arg(arg, f"{item!r} is not key=value", defaults)
        if key not in defaults:
            raise _bad_arg(arg, f"unknown key {key!r}", defaults)
        kind = type(defaults[key])
        try:
            values[key] = _parse_value(text, bool) if kind is bool else kind(text)
        except ValueError:
            accepted = " (true, false, 1 or 0)" if kind is bool else ""
            problem = f"{key}={text!r} is not a valid {kind.__name__}{accepted}"
            raise _bad_arg(arg, problem, defaults) from None
    return ml_collections.FrozenConfigDict(values)


def _bad_arg(arg: str, problem: str, defaults: dict[str, Any]) -> UserError:
    if not defaults:
        return UserError(
            f"This experiment takes no argument, got ':{arg}'. Drop it (--config=FILE.py) and set "
            "config fields with --config.KEY=VALUE instead."
        )
    takes = ", ".join(f"{key} (default {value!r})" for key, value in defaults.items())
    key, value = next(iter(defaults.items()))
    example = str(not value).lower() if isinstance(value, bool) else value or "VALUE"
    return UserError(
        f"Bad experiment argument ':{arg}': {problem}. It takes key=value pairs separated by "
        f"commas, with these keys: {takes}; e.g. --config=FILE.py:{key}={example}."
    )


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


# Fields that change how a run reads its data or is observed, never its numbers: a resumed run
# may change them (one that ran out of host memory resumes with data.storage="disk").
RUN_OPTIONS = (
    "data.storage",
    "data.prefetch",
    "train.profile_steps",
    "log.wandb_project",
    "log.wandb_mode",
)


def differences(saved: dict, config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
    """Keys whose value in a saved config.json differs from `config`: {key: (saved, new)},
    leaving out RUN_OPTIONS fields. A key the saved config lacks is no difference while
    `config` holds base_config's default there: a field the code gained after that run
    started, at the value that means what the run did without it."""
    old = flatten(saved)
    new = flatten(json.loads(to_json(config)))
    defaults = flatten(json.loads(to_json(base_config(config.name))))
    added = {
        key for key in new.keys() - old.keys() if key in defaults and new[key] == defaults[key]
    }
    return {
        key: (old.get(key, "<absent>"), new.get(key, "<absent>"))
        for key in sorted((old.keys() | new.keys()) - set(RUN_OPTIONS) - added)
        if old.get(key, "<absent>") != new.get(key, "<absent>")
    }
