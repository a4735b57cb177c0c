"""Model registry: every model is a Flax Linen module registered under a short name.

A model's `__call__(inputs, train: bool)` returns logits; models with batch statistics keep
them in the `batch_stats` collection and models with dropout draw from the `dropout` rng.
Adding a model is one file here that decorates its module with `@MODELS.register(name)`; its
class attribute `checks` ({field: research.checks.Check}) says what values its fields allow.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from research.checks import Check, one_of
from research.errors import UserError
from research.registry import Registry, unknown

MODELS: Registry[type[nn.Module]] = Registry(
    "model",
    "model.name",
    package=__name__,
    note="Or add a model: one file in research/models/ with @MODELS.register(name).",
)
# Language models whose text `launch.sample` can sample: `sample(model, params, prompt, length,
# temperature, key)` registered under the model's name.
SAMPLERS: Registry[Callable] = Registry("language model", "model.name", package=__name__)
DATA_FIELDS = ("num_classes", "vocab_size")
DTYPE: Check = one_of("float32", "bfloat16", "float16")  # the compute dtype of `dtype` fields


def choose(key: str, value: str, options: dict[str, Any]) -> Any:
    """options[value], or a UserError naming the config key model.<key> and its choices."""
    if value not in options:
        raise unknown(key, f"model.{key}", value, options)
    return options[value]


def embeddings(module: nn.Module, x: jnp.ndarray) -> jnp.ndarray:
    """Marks token embeddings as the value adversarial training perturbs (`Module.perturb`,
    a no-op unless the step passes perturbations); `init` leaves no perturbation variable of
    the example's shape behind."""
    return x if module.is_initializing() else module.perturb("embeddings", x)


def default_config(name: str, **overrides: Any) -> ml_collections.ConfigDict:
    """`{"name": name, <every field of the model with its default>}`, updated by `overrides`.

    Experiments start from this so every hyperparameter of the model is a config key that the
    command line and sweeps can set, and a typo in one is caught as an unknown key. Fields the
    data determines (`DATA_FIELDS`) are left out: the loop fills them from the dataset.
    """
    cls = MODELS.lookup(name)
    config = {"name": name}
    for field in dataclasses.fields(cls):
        if field.name in ("parent", "name", *DATA_FIELDS) or field.default is dataclasses.MISSING:
            continue
        value = field.default
        config[field.name] = jnp.dtype(value).name if field.name == "dtype" else value
    extra = set(overrides) - set(config)
    if extra:
        raise UserError(f"Model {name!r} has no fields {sorted(extra)}; it has {sorted(config)}.")
    config.update(overrides)
    return ml_collections.ConfigDict(config)


def data_fields(name: str) -> tuple[str, ...]:
    """The `DATA_FIELDS` model `name` takes: a masked-LM on labelled text has no num_classes."""
    fields = {field.name for field in dataclasses.fields(MODELS.lookup(name))}
    return tuple(field for field in DATA_FIELDS if field in fields)


def build_model(name: str, **kwargs) -> nn.Module:
    """Builds the registered model `name` with hyperparameters `kwargs`."""
    cls = MODELS.lookup(name)
    if "dtype" in kwargs:
        kwargs["dtype"] = jnp.dtype(kwargs["dtype"])
    return cls(**kwargs)
