"""A task is what the loop needs beyond the model: inputs from a batch, the loss and metrics.

Every task implements the same two pure functions, so one training loop serves image
classification, language modelling, masked-LM and sequence classification alike.
"""

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections

from research.registry import Registry

Batch = dict[str, jnp.ndarray]
Aux = dict[str, jnp.ndarray]  # what model_inputs drew that the loss must see; often empty


class Task(Protocol):
    target: str  # the validation metric that picks the best checkpoint
    mode: str  # "max" or "min"

    def model_inputs(self, batch: Batch, key: jax.Array, train: bool) -> tuple[Any, Aux]:
        """Device-side preprocessing (normalisation, augmentation, masking), drawn only from
        `key`: the model's first argument (an array, or a pytree of them such as the
        masked-LM's pair) and `aux`, the draws the loss scores against (the masked-LM's
        masking), so nothing is drawn twice or guessed from the batch."""

    def loss_and_metrics(
        self, logits: jnp.ndarray, batch: Batch, aux: Aux
    ) -> tuple[jnp.ndarray, Batch]:
        """Mean loss for the gradient, and metric *sums* with their `count` for averaging;
        `aux` is what model_inputs returned for this batch."""


def weights(batch: Batch, labels: jnp.ndarray) -> jnp.ndarray:
    """Per-example weights: the eval `mask` where present (padding has weight 0), else ones."""
    return batch.get("mask", jnp.ones(labels.shape[0], jnp.float32))


# Task classes, each with `from_config(task_config, data_info) -> Task`, registered by the
# modules of this package: adding a task is one file.
TASKS: Registry[Any] = Registry("task", "task.name", package=__name__)


def build_task(config: ml_collections.ConfigDict, info: dict[str, Any]) -> Task:
    """Builds the task registered as `config.name` from its config and the data's `info`."""
    return TASKS.lookup(config.name).from_config(config, info)
