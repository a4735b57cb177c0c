"""TFDS datasets by name, read once into numpy; TensorFlow is imported only on this path.

Image datasets up to CIFAR size fit in host memory, which makes the batch at any step a cheap
index into arrays (see research.data.train_batch) instead of a replayed stream.
"""

import os
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

from research.checks import integer, optional
from research.data import SOURCES, Arrays, Dataset, carve_validation, image_info
from research.errors import UserError

# Set by experiments on variable-size images (ImageNet): the side of the center squares.
SOURCES.declare({"image_size": None}, {"image_size": optional(integer(1))})


def import_tfds():
    """Imports TFDS with TensorFlow kept quiet and off every accelerator."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tensorflow_datasets as tfds

    tf.config.set_visible_devices([], "GPU")  # TFDS must never take accelerator memory.
    return tfds


def builder(name: str, data_dir: str | None):
    """TFDS's builder of `name`. TFDS finds builders without TensorFlow, so a name that is
    neither a registered source nor a TFDS dataset is reported before TensorFlow's start-up."""
    import tensorflow_datasets as tfds  # imports TensorFlow lazily, on first use

    try:
        dataset_builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise SOURCES.unknown(name, tfds.list_builders(with_community_datasets=False)) from None
    import_tfds()
    return dataset_builder


# Where a dataset's test labels are withheld, its validation split serves as the test split.
TEST_SPLITS = {"imagenet2012": "validation"}


def _square(example: dict, size: int) -> dict:
    """Resizes the shorter side to `size` and center-crops: variable-size images (ImageNet)
    become one uint8 array; random-resized crops are then cut on the device."""
    import tensorflow as tf

    image = example["image"]
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    resized = tf.image.resize(image, tf.cast(shape * size / tf.reduce_min(shape), tf.int32))
    image = tf.image.resize_with_crop_or_pad(resized, size, size)
    return {**example, "image": tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)}


def _read_split(dataset_builder, split: str, image_size: int | None = None) -> Arrays:
    tfds = import_tfds()
    dataset = dataset_builder.as_dataset(split=split)
    if image_size:
        dataset = dataset.map(lambda example: _square(example, image_size), num_parallel_calls=-1)
    chunks = list(tfds.as_numpy(dataset.batch(10_000)))
    return {
        "image": np.concatenate([c["image"] for c in chunks]),
        "label": np.concatenate([c["label"] for c in chunks]).astype(np.int32),
    }


def read_prepared(dataset_builder, name: str, download: bool, read: Callable[[], Any]) -> Any:
    """`read()`, or a UserError naming the fix when the dataset is not prepared on disk.

    Downloads only when `download` is set, so an offline machine fails at once.
    """
    try:
        return read()
    except AssertionError:  # TFDS's way of saying the dataset is not prepared.
        if not download:
            raise UserError(
                f"TFDS dataset {name!r} is not prepared in {dataset_builder.data_dir!r}. "
                f"Prepare it from the official files on disk with `python -m launch.prepare_data "
                f"{name} --from=DIR`, point --config.data.tfds_data_dir at a prepared "
                f"copy, or let TFDS download it with --config.data.download=true."
            ) from None
        dataset_builder.download_and_prepare()
        return read()


def load(config: ml_collections.ConfigDict) -> Dataset:
    """Loads train and test of TFDS `config.name`; validation is carved from train.

    Downloads only when `config.download` is set, so an offline machine fails at once with
    the command that prepares the data from files on disk.
    """
    dataset_builder = builder(config.name, config.tfds_data_dir)
    size = config.get("image_size")
    names = {"train": "train", "test": TEST_SPLITS.get(config.name, "test")}
    splits = read_prepared(
        dataset_builder,
        config.name,
        config.download,
        lambda: {split: _read_split(dataset_builder, name, size) for split, name in names.items()},
    )
    train, val = carve_validation(splits["train"], config.validation_fraction)
    num_classes = dataset_builder.info.features["label"].num_classes
    info = image_info(train, num_classes)
    return Dataset({"train": train, "val": val, "test": splits["test"]}, info)
