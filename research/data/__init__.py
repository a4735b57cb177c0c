"""Datasets as in-memory splits of named numpy arrays, and batches as pure functions of the step.

`load(data_config)` returns a `Dataset`; every source (embedded, TFDS, local files) produces the
same shape of thing, so the training loop never knows where the data came from.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

from research.errors import UserError
from research.registry import Registry

Arrays = dict[str, np.ndarray]


@dataclasses.dataclass
class Dataset:
    """`splits` maps train/val/test to arrays of equal length; `info` holds what models need.

    info: num_classes, input_shape (one example, without batch), and for images the
    per-channel `mean` and `std` of the training pixels (used to normalise on the device).
    """

    splits: dict[str, Arrays]
    info: dict[str, Any]

    def size(self, split: str) -> int:
        return len(next(iter(self.splits[split].values())))


def carve_validation(arrays: Arrays, fraction: float, seed: int = 0) -> tuple[Arrays, Arrays]:
    """Splits off a validation set by a fixed permutation: the same for every run seed."""
    n = len(next(iter(arrays.values())))
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction))
    val, train = order[:n_val], order[n_val:]
    return {k: v[train] for k, v in arrays.items()}, {k: v[val] for k, v in arrays.items()}


def image_info(train: Arrays, num_classes: int) -> dict[str, Any]:
    pixels = train["image"].reshape(-1, train["image"].shape[-1]).astype(np.float64)
    return {
        "num_classes": num_classes,
        "input_shape": tuple(train["image"].shape[1:]),
        "mean": pixels.mean(0).tolist(),
        "std": (pixels.std(0) + 1e-6).tolist(),
    }


# A data source module of this package registers its loaders here, with the data fields each
# reads beyond name and the batch sizes; adding one is one file.
SOURCES: Registry[Callable[[ml_collections.ConfigDict], Dataset]] = Registry(
    "data source",
    "data.name",
    package=__name__,
    note="Any other name is read as a TFDS dataset (such as mnist, fashion_mnist or cifar10; "
    "see tfds.list_builders()), and TFDS has none by this name.",
    unregistered_reads=("validation_fraction", "tfds_data_dir", "download", "image_size"),
)


def load(config: ml_collections.ConfigDict) -> Dataset:
    """Loads `config.name`: a registered source first, else a TFDS dataset."""
    if config.name in SOURCES:
        dataset = SOURCES.lookup(config.name)(config)
    else:
        from research.data import tfds_source

        dataset = tfds_source.load(config)
    if config.batch_size > dataset.size("train"):
        raise UserError(
            f"data.batch_size={config.batch_size} is larger than the training split of "
            f"{config.name!r} ({dataset.size('train')} examples), so not one batch fits in an "
            f"epoch. Pass --config.data.batch_size=N with N <= {dataset.size('train')}."
        )
    return dataset


def _process_rows(rows: np.ndarray, process: tuple[int, int]) -> np.ndarray:
    """This process's contiguous share of a global batch's rows (all of them on one host)."""
    index, count = process
    share = len(rows) // count
    return rows[index * share : (index + 1) * share]


def train_batch(
    dataset: Dataset,
    seed: int,
    epoch: int,
    step: int,
    batch_size: int,
    process: tuple[int, int] = (0, 1),
) -> Arrays:
    """The training batch at (seed, epoch, step): a pure function, so resuming needs no replay.

    Each epoch is a fresh permutation seeded by (seed, epoch); the last partial batch is dropped.
    With several processes each reads only its own rows of the global batch.
    """
    order = np.random.default_rng([seed, epoch]).permutation(dataset.size("train"))
    indices = _process_rows(order[step * batch_size : (step + 1) * batch_size], process)
    return {k: v[indices] for k, v in dataset.splits["train"].items()}


def eval_batches(dataset: Dataset, split: str, batch_size: int, process: tuple[int, int] = (0, 1)):
    """Yields the whole split in order with `mask` 1 on real rows and 0 on the last's padding."""
    n = dataset.size(split)
    for start in range(0, n, batch_size):
        rows = _process_rows(np.arange(start, start + batch_size), process)
        real = rows < n
        batch = {k: v[np.where(real, rows, 0)] for k, v in dataset.splits[split].items()}
        batch["mask"] = real.astype(np.float32)
        yield batch
