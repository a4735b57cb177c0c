"""Image classification: per-channel normalisation on the device, cross-entropy or squared loss.

Pure functions of arrays only; the training loop owns every side effect.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from research.checks import one_of
from research.errors import UserError
from research.registry import Registry
from research.tasks import TASKS, Aux, Batch, weights

LOSSES = ("cross_entropy", "squared")
TASKS.declare({}, {"loss": one_of(*LOSSES)})  # read by the classification tasks
# Training-time augmentations by `task.augment`: (images, key, crop_padding) -> images.
AUGMENTATIONS: Registry[Callable[[jnp.ndarray, jax.Array, int], jnp.ndarray]] = Registry(
    "augmentation", "task.augment"
)


def random_crop(images: jnp.ndarray, key: jax.Array, padding: int) -> jnp.ndarray:
    """Pads each image by `padding` pixels and crops it back to size at a random offset."""
    height, width = images.shape[1:3]
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * padding + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(
            image, (offset[0], offset[1], 0), (height, width, image.shape[-1])
        )

    return jax.vmap(crop)(padded, offsets)


def random_resized_crop(
    images: jnp.ndarray,
    key: jax.Array,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> jnp.ndarray:
    """Inception-style crops (Szegedy et al. 2015): a random area fraction in `scale` and
    aspect ratio in `ratio`, resized bilinearly back to the input size; float32 out.

    Crops that would overflow the image are clipped to it, instead of torchvision's retries.
    """
    height, width = images.shape[1:3]
    area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
    n = images.shape[0]
    area = jax.random.uniform(area_key, (n,), minval=scale[0], maxval=scale[1]) * height * width
    log_ratio = jax.random.uniform(
        ratio_key, (n,), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1])
    )
    crop_h = jnp.clip(jnp.sqrt(area / jnp.exp(log_ratio)), 1.0, height)
    crop_w = jnp.clip(jnp.sqrt(area * jnp.exp(log_ratio)), 1.0, width)
    top = jax.random.uniform(y_key, (n,)) * (height - crop_h)
    left = jax.random.uniform(x_key, (n,)) * (width - crop_w)

    def resize(image, top, left, crop_h, crop_w):
        scale_hw = jnp.stack([height / crop_h, width / crop_w])
        return jax.image.scale_and_translate(
            image, image.shape, (0, 1), scale_hw, -jnp.stack([top, left]) * scale_hw, "linear"
        )

    return jax.vmap(resize)(images.astype(jnp.float32), top, left, crop_h, crop_w)


def random_flip(images: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
    """Mirrors each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1], images)


@AUGMENTATIONS.register("none")
def _none(images: jnp.ndarray, key: jax.Array, padding: int) -> jnp.ndarray:
    del key, padding
    return images


@AUGMENTATIONS.register("crop", reads=("crop_padding",))
def _crop(images: jnp.ndarray, key: jax.Array, padding: int) -> jnp.ndarray:
    return random_crop(images, jax.random.split(key)[0], padding)


@AUGMENTATIONS.register("crop_flip", reads=("crop_padding",))
def _crop_flip(images: jnp.ndarray, key: jax.Array, padding: int) -> jnp.ndarray:
    crop_key, flip_key = jax.random.split(key)
    return random_flip(random_crop(images, crop_key, padding), flip_key)


@AUGMENTATIONS.register("resized_crop_flip")
def _resized_crop_flip(images: jnp.ndarray, key: jax.Array, padding: int) -> jnp.ndarray:
    del padding  # the crop's size is random, not a padding
    crop_key, flip_key = jax.random.split(key)
    return random_flip(random_resized_crop(images, crop_key), flip_key)


@TASKS.register("classification", reads=("loss", "label_smoothing", "augment", "crop_padding"))
@dataclasses.dataclass(frozen=True)
class ImageClassification:
    """Labels [batch] int32 against logits [batch, classes]; metric sums weighted by the mask.

    `loss="squared"` is the lecture's J = 1/2 sum_k (t_k - z_k)^2 with z = sigmoid(logits)
    and t the one-hot target.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    loss: str = "cross_entropy"
    label_smoothing: float = 0.0
    augment: str = "none"
    crop_padding: int = 4
    target: str = "accuracy"
    mode: str = "max"

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, info: dict[str, Any]):
        if config.loss not in LOSSES:
            raise UserError(f"task.loss={config.loss!r} is unknown; use one of {LOSSES}.")
        AUGMENTATIONS.lookup(config.augment)  # refused here, not at the first training step
        return cls(
            mean=tuple(info["mean"]),
            std=tuple(info["std"]),
            num_classes=info["num_classes"],
            loss=config.loss,
            label_smoothing=config.label_smoothing,
            augment=config.augment,
            crop_padding=config.crop_padding,
        )

    def model_inputs(self, batch: Batch, key: jax.Array, train: bool) -> tuple[jnp.ndarray, Aux]:
        """images: [batch, height, width, channels] uint8 -> normalised float32, and no aux.

        Training batches are augmented here, on the device, with keys derived from the step.
        """
        images = batch["image"]
        if train:
            images = AUGMENTATIONS.lookup(self.augment)(images, key, self.crop_padding)
        images = images.astype(jnp.float32)
        return (images - jnp.asarray(self.mean)) / jnp.asarray(self.std), {}

    def loss_and_metrics(
        self, logits: jnp.ndarray, batch: Batch, aux: Aux
    ) -> tuple[jnp.ndarray, Batch]:
        del aux
        labels = batch["label"]
        targets = jax.nn.one_hot(labels, self.num_classes)
        if self.loss == "squared":
            per_example = 0.5 * jnp.sum((targets - jax.nn.sigmoid(logits)) ** 2, axis=-1)
        else:
            smoothed = optax.smooth_labels(targets, self.label_smoothing)
            per_example = optax.softmax_cross_entropy(logits, smoothed)
        w = weights(batch, labels)
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        count = jnp.sum(w)
        loss = jnp.sum(per_example * w) / jnp.maximum(count, 1.0)
        return loss, {"loss": loss * count, "accuracy": jnp.sum(correct * w), "count": count}
