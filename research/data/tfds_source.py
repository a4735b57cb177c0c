"""TFDS datasets by name: decoded once into memory, or read by index from ArrayRecord files.

Image datasets up to CIFAR size fit in host memory, which makes the batch at any step a cheap
index into arrays (see research.data.train_batch) instead of a replayed stream. Larger ones
(ImageNet) must be prepared as ArrayRecord (`launch.prepare_data` does), which TFDS reads by
index: each step decodes only its batch's rows, in threads. TensorFlow is imported only on
this path.
"""

import io
import os
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np
from PIL import Image

from research.checks import integer, optional
from research.data import (
    SOURCES,
    Arrays,
    Dataset,
    Records,
    carve_validation,
    decoders,
    image_info,
    in_memory,
    keep_in_memory,
    take,
)
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
# Per-channel pixel mean and std declared for a dataset, instead of measured on a sample of its
# training images at start-up (decoding 10,000 ImageNet JPEGs takes minutes).
DECLARED_STATS = {
    "imagenet2012": ([123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),  # the usual ones
}


def _square(encoded: bytes, size: int, channels: int) -> np.ndarray:
    """Decodes an image, resizes its shorter side to `size` and center-crops: variable-size
    images (ImageNet's JPEGs) become one uint8 shape [size, size, channels]; random-resized
    crops are then cut on the device. PIL releases the GIL for all three."""
    with Image.open(io.BytesIO(encoded)) as image:
        image = image.convert("RGB" if channels == 3 else "L")
    scale = size / min(image.size)
    width, height = (max(size, round(side * scale)) for side in image.size)
    resized = image.resize((width, height), Image.BILINEAR)
    top, left = (height - size) // 2, (width - size) // 2
    square = np.asarray(resized.crop((left, top, left + size, top + size)))
    return square.reshape(size, size, channels)


def _tensorflow_split(dataset_builder, split: str) -> Arrays:
    """A TFRecord-prepared split decoded whole by tf.data (random access needs ArrayRecord)."""
    tfds = import_tfds()
    chunks = list(tfds.as_numpy(dataset_builder.as_dataset(split=split).batch(10_000)))
    return {
        "image": np.concatenate([c["image"] for c in chunks]),
        "label": np.concatenate([c["label"] for c in chunks]).astype(np.int32),
    }


def _records(dataset_builder, split: str, image_size: int | None) -> Records:
    """A random-access TFDS split as Records of uint8 `image` and int32 `label`. One call reads
    a batch's records (ArrayRecord fetches them in parallel; parsing holds the GIL, so threads
    would not help it). With `image_size` the images stay encoded there and are decoded,
    resized and cropped in threads, which PIL runs without the GIL."""
    channels = dataset_builder.info.features["image"].shape[-1]
    skip = {"image": import_tfds().decode.SkipDecoding()} if image_size else None
    source = dataset_builder.as_data_source(split=split, decoders=skip)

    def example(record: dict) -> Arrays:
        image = _square(record["image"], image_size, channels) if image_size else record["image"]
        return {"image": image, "label": np.int32(record["label"])}

    def read(rows: list[int]) -> list[Arrays]:
        records = source.__getitems__(rows)
        return list(decoders().map(example, records) if image_size else map(example, records))

    return Records(read, np.arange(len(source)))


def _decoded_bytes(dataset_builder, image_size: int | None) -> int:
    """The train split's size once decoded, from TFDS's metadata (0 when it has none)."""
    shape = dataset_builder.info.features["image"].shape
    if image_size:
        shape = (image_size, image_size, shape[-1])
    splits = dataset_builder.info.splits  # empty under tfds.testing.mock_data
    return (splits["train"].num_examples if "train" in splits else 0) * int(np.prod(shape))


def prepared_reader(dataset_builder):
    """The builder to read a prepared dataset with: one made from its files knows every format
    written there, where TFDS 4.9's builder from code misses those that `launch.prepare_data
    --convert` added. An unprepared dataset keeps its builder (reading it then fails)."""
    if dataset_builder.is_prepared():
        return import_tfds().builder_from_directory(dataset_builder.data_dir)
    return dataset_builder


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
        dataset_builder.download_and_prepare(file_format="array_record")  # readable by index
        return read()


def _splits(dataset_builder, config: ml_collections.ConfigDict, names: dict[str, str]):
    """Train and test by data.storage: Records read by index, or arrays in memory. Reading by
    index needs ArrayRecord files; a TFRecord dataset is read whole by tf.data, or gets the
    command that converts it."""
    size = config.get("image_size")
    if None in dataset_builder.info.features["image"].shape and not size:
        raise UserError(
            f"The images of TFDS dataset {config.name!r} differ in size, so they cannot be "
            "batched as they are. Pass --config.data.image_size=N to resize the shorter side to "
            "N and center-crop them to NxN (224 for ImageNet)."
        )
    memory = keep_in_memory(config, _decoded_bytes(dataset_builder, size))
    reader = prepared_reader(dataset_builder)
    try:
        splits = {ours: _records(reader, theirs, size) for ours, theirs in names.items()}
    except NotImplementedError:  # prepared as TFRecord only, or not prepared at all
        if not dataset_builder.is_prepared():
            raise AssertionError("not prepared") from None  # read_prepared says what to do
        if not memory or size:
            why = f"data.image_size={size} resizes" if size else f"data.storage={config.storage!r}"
            raise UserError(
                f"TFDS dataset {config.name!r} is prepared as TFRecord in "
                f"{dataset_builder.data_dir!r}, which can only be read whole, but {why} reads "
                f"it by index. Convert it to ArrayRecord with `python -m launch.prepare_data "
                f"{config.name} --convert"
                + (f" --data_dir={config.tfds_data_dir}" if config.tfds_data_dir else "")
                + "`"
                + ("." if size else ", or pass --config.data.storage=memory if it fits in memory.")
            ) from None
        return {ours: _tensorflow_split(dataset_builder, theirs) for ours, theirs in names.items()}
    return {name: in_memory(split) for name, split in splits.items()} if memory else splits


def load(config: ml_collections.ConfigDict) -> Dataset:
    """Loads train and test of TFDS `config.name`; validation is carved from train.

    Downloads only when `config.download` is set, so an offline machine fails at once with
    the command that prepares the data from files on disk.
    """
    dataset_builder = builder(config.name, config.tfds_data_dir)
    names = {"train": "train", "test": TEST_SPLITS.get(config.name, "test")}
    splits = read_prepared(
        dataset_builder,
        config.name,
        config.download,
        lambda: _splits(dataset_builder, config, names),
    )
    train, val = carve_validation(splits["train"], config.validation_fraction)
    num_classes = dataset_builder.info.features["label"].num_classes
    if config.name in DECLARED_STATS:
        mean, std = DECLARED_STATS[config.name]
        shape = take(train, np.arange(1))["image"].shape[1:]
        info = {"num_classes": num_classes, "input_shape": shape, "mean": mean, "std": std}
    else:
        info = image_info(train, num_classes)
    return Dataset({"train": train, "val": val, "test": splits["test"]}, info)
