"""A task is what the loop needs beyond the model: inputs from a batch, the loss and metrics.

Every task implements the same two pure functions, so one training loop serves image
classification, language modelling, masked-LM and sequence classification alike.
"""

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections

from research.errors import UserError

Batch = dict[str, jnp.ndarray]


class Task(Protocol):
    target: str  # the validation metric that picks the best checkpoint
    mode: str  # "max" or "min"

    def model_inputs(self, batch: Batch, key: jax.Array, train: bool) -> Any:
        """Device-side preprocessing (normalisation, augmentation keyed by the step); the
        model's first argument: an array, or a pytree of them (the masked-LM's pair)."""

    def loss_and_metrics(self, logits: jnp.ndarray, batch: Batch) -> tuple[jnp.ndarray, Batch]:
        """Mean loss for the gradient, and metric *sums* with their `count` for averaging."""


def weights(batch: Batch, labels: jnp.ndarray) -> jnp.ndarray:
    """Per-example weights: the eval `mask` where present (padding has weight 0), else ones."""
    return batch.get("mask", jnp.ones(labels.shape[0], jnp.float32))


TASK_MODULES = ("classification", "language")


def build_task(config: ml_collections.ConfigDict, info: dict[str, Any]) -> Task:
    """Builds `config.name` from the first task module whose `TASKS` has it."""
    import importlib

    builders = {}
    for module in TASK_MODULES:
        builders.update(importlib.import_module(f"research.tasks.{module}").TASKS)
    if config.name not in builders:
        raise UserError(
            f"Unknown task {config.name!r} in task.name; known tasks: {', '.join(builders)}."
        )
    return builders[config.name](config, info)
