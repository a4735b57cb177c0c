"""Model registry: every model is a Flax Linen module registered under a short name.

A model's `__call__(inputs, train: bool)` returns logits; models with batch statistics keep
them in the `batch_stats` collection and models with dropout draw from the `dropout` rng.
Adding a model is one file here plus its module name in `_MODULES` below.
"""

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from research.errors import UserError

_REGISTRY: dict[str, type[nn.Module]] = {}
DATA_FIELDS = ("num_classes", "vocab_size")
_MODULES = ("mlp", "lenet", "resnet", "rnn", "transformer")


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that makes a module buildable by `build_model(name, ...)`."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} registered twice")
        _REGISTRY[name] = cls
        return cls

    return add


def choose(key: str, value: str, options: dict[str, Any]) -> Any:
    """options[value], or a UserError naming the config key model.<key> and its choices."""
    if value not in options:
        raise UserError(
            f"Unknown {key} {value!r} in config key model.{key}. "
            f"Set --config.model.{key} to one of: {', '.join(options)}."
        )
    return options[value]


def embeddings(module: nn.Module, x: jnp.ndarray) -> jnp.ndarray:
    """Marks token embeddings as the value adversarial training perturbs (`Module.perturb`,
    a no-op unless the step passes perturbations); `init` leaves no perturbation variable of
    the example's shape behind."""
    return x if module.is_initializing() else module.perturb("embeddings", x)


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(f"research.models.{module}")


def names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def default_config(name: str, **overrides: Any) -> ml_collections.ConfigDict:
    """`{"name": name, <every field of the model with its default>}`, updated by `overrides`.

    Experiments start from this so every hyperparameter of the model is a config key that the
    command line and sweeps can set, and a typo in one is caught as an unknown key. Fields the
    data determines (`DATA_FIELDS`) are left out: the loop fills them from the dataset.
    """
    _load_all()
    cls = _lookup(name)
    config = {"name": name}
    for field in dataclasses.fields(cls):
        if field.name in ("parent", "name", *DATA_FIELDS) or field.default is dataclasses.MISSING:
            continue
        value = field.default
        config[field.name] = jnp.dtype(value).name if field.name == "dtype" else value
    unknown = set(overrides) - set(config)
    if unknown:
        raise UserError(f"Model {name!r} has no fields {sorted(unknown)}; it has {sorted(config)}.")
    config.update(overrides)
    return ml_collections.ConfigDict(config)


def data_fields(name: str) -> tuple[str, ...]:
    """The `DATA_FIELDS` model `name` takes: a masked-LM on labelled text has no num_classes."""
    _load_all()
    fields = {field.name for field in dataclasses.fields(_lookup(name))}
    return tuple(field for field in DATA_FIELDS if field in fields)


def _lookup(name: str) -> type[nn.Module]:
    if name not in _REGISTRY:
        raise UserError(
            f"Unknown model {name!r} in config key model.name. "
            f"Registered models: {', '.join(sorted(_REGISTRY))}. "
            "Set --config.model.name to one of them, or register a new one in research/models/."
        )
    return _REGISTRY[name]


def build_model(name: str, **kwargs) -> nn.Module:
    """Builds the registered model `name` with hyperparameters `kwargs`."""
    _load_all()
    cls = _lookup(name)
    if "dtype" in kwargs:
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    return cls(**kwargs)
