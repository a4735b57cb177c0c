"""Language tasks: character LM (next token), BERT masked-LM, and text classification.

Pure functions of arrays only; pad tokens (id 0) and the eval batch's padding rows never count.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from research.errors import UserError
from research.tasks import TASKS, Aux, Batch, weights
from research.tasks.classification import LOSSES, ImageClassification

MASK_RATE, MASK_TOKEN_SHARE, RANDOM_TOKEN_SHARE = 0.15, 0.8, 0.1


def token_weights(batch: Batch, tokens: jnp.ndarray) -> jnp.ndarray:
    """[batch, time] float: 1 on real tokens of real rows, 0 on pad tokens and padding rows."""
    return (tokens != 0) * weights(batch, tokens)[:, None]


def token_metrics(
    logits: jnp.ndarray, targets: jnp.ndarray, w: jnp.ndarray
) -> tuple[jnp.ndarray, Batch]:
    """Cross-entropy of logits [batch, time, vocab] against targets [batch, time], weighted by w."""
    per_token = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    count = jnp.sum(w)
    loss_sum = jnp.sum(per_token * w)
    correct = jnp.sum((jnp.argmax(logits, -1) == targets) * w)
    return loss_sum / jnp.maximum(count, 1.0), {
        "loss": loss_sum,
        "accuracy": correct,
        "count": count,
    }


@TASKS.register("char_lm")
@dataclasses.dataclass(frozen=True)
class CharLM:
    """Next-token prediction on tokens [batch, seq_len + 1]: inputs [:, :-1], targets [:, 1:].

    Metrics are per target token: loss in nats and bits_per_char = loss / ln 2.
    """

    target: str = "bits_per_char"
    mode: str = "min"

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, info: dict[str, Any]) -> "CharLM":
        del config, info
        return cls()

    def model_inputs(self, batch: Batch, key: jax.Array, train: bool) -> tuple[jnp.ndarray, Aux]:
        del key, train
        return batch["tokens"][:, :-1], {}

    def loss_and_metrics(
        self, logits: jnp.ndarray, batch: Batch, aux: Aux
    ) -> tuple[jnp.ndarray, Batch]:
        del aux
        targets = batch["tokens"][:, 1:]
        loss, sums = token_metrics(logits, targets, token_weights(batch, targets))
        return loss, {**sums, "bits_per_char": sums["loss"] / math.log(2)}


def mask_tokens(
    tokens: jnp.ndarray,
    key: jax.Array,
    num_special: int,
    mask_id: int,
    vocab_size: int,
    max_per_row: int | None = None,
    mask_share: float = MASK_TOKEN_SHARE,
    random_share: float = RANDOM_TOKEN_SHARE,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """BERT's corruption of tokens [batch, time] -> (inputs, selected [batch, time] bool).

    Each non-special token (pad and the other specials are never chosen) is selected with
    probability 15%; a selected token becomes [MASK] (`mask_share`, 80%), a random non-special
    token (`random_share`, 10%), or stays itself (the rest). With `max_per_row`, a row's
    selections past the first that many are dropped (left unselected and unchanged).
    """
    select_key, action_key, random_key = jax.random.split(key, 3)
    selected = (tokens >= num_special) & (jax.random.uniform(select_key, tokens.shape) < MASK_RATE)
    if max_per_row is not None:
        selected &= jnp.cumsum(selected, axis=1) <= max_per_row
    action = jax.random.uniform(action_key, tokens.shape)
    random_tokens = jax.random.randint(random_key, tokens.shape, num_special, vocab_size)
    kept_or_random = jnp.where(action < mask_share + random_share, random_tokens, tokens)
    replaced = jnp.where(action < mask_share, mask_id, kept_or_random)
    return jnp.where(selected, replaced, tokens).astype(tokens.dtype), selected


def prediction_slots(time: int) -> int:
    """How many positions of a `time`-token row the masked-LM predicts (BERT's
    max_predictions_per_seq): 15% of the row plus 4 standard deviations of that binomial count,
    so fewer than 1 row in 10,000 has a selection to drop. The projection to the vocabulary is
    most of a small BERT's compute; at time 64 this predicts 22 positions instead of 64.
    """
    spread = 4 * math.sqrt(time * MASK_RATE * (1 - MASK_RATE))
    return min(time, math.ceil(time * MASK_RATE + spread))


@TASKS.register("masked_lm")
@dataclasses.dataclass(frozen=True)
class MaskedLM:
    """BERT's masked-LM on `tokens` [batch, time]; loss and accuracy over the selected tokens.

    The model reads the corrupted tokens and predicts only at `prediction_slots(time)` positions
    per row, the selected ones first (unfilled slots weigh 0): its inputs are the pair
    (tokens, positions [batch, slots]) and its logits are [batch, slots, vocab].
    model_inputs masks once, with the key it is given: the step's augment key in training, so
    every step draws new masks (dynamic masking, as in RoBERTa), and the eval step's fixed key,
    so validation scores the same masks every epoch. The masking reaches the loss through aux.
    `mask_share` and `random_share` split the selected tokens as in `mask_tokens`.
    """

    num_special: int
    mask_id: int
    vocab_size: int
    mask_share: float = MASK_TOKEN_SHARE
    random_share: float = RANDOM_TOKEN_SHARE
    target: str = "loss"
    mode: str = "min"

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, info: dict[str, Any]) -> "MaskedLM":
        del config
        return cls(info["num_special"], info["mask_id"], info["vocab_size"])

    def model_inputs(
        self, batch: Batch, key: jax.Array, train: bool
    ) -> tuple[tuple[jnp.ndarray, jnp.ndarray], Aux]:
        """((corrupted tokens, positions), aux {selected [batch, time] bool, positions
        [batch, slots] int32}); training and evaluation mask alike, only their keys differ."""
        del train
        tokens = batch["tokens"]
        slots = prediction_slots(tokens.shape[1])
        inputs, selected = mask_tokens(
            tokens,
            key,
            self.num_special,
            self.mask_id,
            self.vocab_size,
            slots,
            self.mask_share,
            self.random_share,
        )
        positions = jnp.argsort(~selected, axis=1, stable=True)[:, :slots].astype(jnp.int32)
        return (inputs, positions), {"selected": selected, "positions": positions}

    def loss_and_metrics(
        self, logits: jnp.ndarray, batch: Batch, aux: Aux
    ) -> tuple[jnp.ndarray, Batch]:
        tokens = batch["tokens"]
        at_slots = lambda x: jnp.take_along_axis(x, aux["positions"], axis=1)
        w = at_slots(token_weights(batch, tokens) * aux["selected"])
        return token_metrics(logits, at_slots(tokens), w)


@TASKS.register("text_classification", reads=("loss", "label_smoothing"))
@dataclasses.dataclass(frozen=True)
class TextClassification:
    """Labels [batch] against logits [batch, classes] from `tokens` [batch, seq_len] inputs."""

    num_classes: int
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    target: str = "accuracy"
    mode: str = "max"

    # The same loss and metrics as image classification; they read only the fields above.
    loss_and_metrics = ImageClassification.loss_and_metrics

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, info: dict[str, Any]):
        if config.loss not in LOSSES:
            raise UserError(f"task.loss={config.loss!r} is unknown; use one of {LOSSES}.")
        return cls(info["num_classes"], config.loss, config.label_smoothing)

    def model_inputs(self, batch: Batch, key: jax.Array, train: bool) -> tuple[jnp.ndarray, Aux]:
        del key, train
        return batch["tokens"], {}
