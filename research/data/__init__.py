"""Datasets as splits read by row index, and batches as pure functions of the step.

`load(data_config)` returns a `Dataset`; every source (embedded, TFDS, local files) produces the
same shape of thing, so the training loop never knows where the data came from. A split is
either named numpy arrays in memory or `Records` read from disk by index (datasets larger than
host memory); `take` reads rows from both.
"""

import dataclasses
import functools
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import ml_collections
import numpy as np

from research.errors import UserError
from research.registry import Registry

Arrays = dict[str, np.ndarray]
STATS_SAMPLE = 10_000  # examples whose pixels give a disk split's mean and std


@functools.cache
def decoders() -> ThreadPoolExecutor:
    """Threads for work that releases the GIL while it runs: PIL's decoding and resizing."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="decode")


@dataclasses.dataclass(frozen=True)
class Records:
    """A split on disk: `read(indices)` returns those examples' arrays, one dict each; `rows`
    are the examples this split holds (a validation carve is a subset of rows, not a copy)."""

    read: Callable[[list[int]], list[Arrays]]
    rows: np.ndarray

    def take(self, indices: np.ndarray) -> Arrays:
        examples = self.read(self.rows[indices].tolist())
        return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


Split = Arrays | Records


def size(split: Split) -> int:
    return len(split.rows) if isinstance(split, Records) else len(next(iter(split.values())))


def take(split: Split, indices: np.ndarray) -> Arrays:
    """Rows `indices` of a split, as arrays (decoded from disk for `Records`)."""
    if isinstance(split, Records):
        return split.take(indices)
    return {key: value[indices] for key, value in split.items()}


def subset(split: Split, indices: np.ndarray) -> Split:
    """The split of rows `indices`: read lazily on disk, copied in memory."""
    if isinstance(split, Records):
        return dataclasses.replace(split, rows=split.rows[indices])
    return take(split, indices)


def transform(split: Split, change: Callable[[Arrays], Arrays]) -> Split:
    """The split with `change` applied to its arrays: to every example as it is read from disk,
    at once in memory (so `change` must work on one example and on many)."""
    if isinstance(split, Records):
        return dataclasses.replace(split, read=lambda rows: list(map(change, split.read(rows))))
    return change(split)


def in_memory(split: Split, chunk: int = 4096) -> Arrays:
    """Every row of a split as arrays, read in chunks."""
    if not isinstance(split, Records):
        return split
    n = size(split)
    chunks = [take(split, np.arange(i, min(i + chunk, n))) for i in range(0, n, chunk)]
    return {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}


@dataclasses.dataclass
class Dataset:
    """`splits` maps train/val/test to splits; `info` holds what models need.

    info: num_classes, input_shape (one example, without batch), and for images the
    per-channel `mean` and `std` of the training pixels (used to normalise on the device).
    """

    splits: dict[str, Split]
    info: dict[str, Any]

    def size(self, split: str) -> int:
        return size(self.splits[split])


def carve_validation(split: Split, fraction: float, seed: int = 0) -> tuple[Split, Split]:
    """Splits off a validation set by a fixed permutation: the same for every run seed."""
    order = np.random.default_rng(seed).permutation(size(split))
    n_val = int(round(len(order) * fraction))
    return subset(split, order[n_val:]), subset(split, order[:n_val])


def image_info(train: Split, num_classes: int, chunk: int = 1024) -> dict[str, Any]:
    """Classes, shape and per-channel pixel mean and std over a fixed sample of STATS_SAMPLE
    training images (all of them when fewer), the same in memory and on disk; summed in
    chunks, so memory stays bounded."""
    n = size(train)
    if not n:
        raise UserError("The training split is empty: there is nothing to train on.")
    rows = np.arange(n)
    if n > STATS_SAMPLE:
        rows = np.sort(np.random.default_rng(0).choice(n, STATS_SAMPLE, replace=False))
    sums = squares = 0.0
    for start in range(0, len(rows), chunk):
        images = take(train, rows[start : start + chunk])["image"]
        pixels = images.reshape(-1, images.shape[-1]).astype(np.float64)
        sums, squares = sums + pixels.sum(0), squares + np.square(pixels).sum(0)
        shape = images.shape[1:]
    count = len(rows) * np.prod(shape[:-1])
    mean = sums / count
    return {
        "num_classes": num_classes,
        "input_shape": tuple(shape),
        "mean": mean.tolist(),
        "std": (np.sqrt(np.maximum(squares / count - mean**2, 0)) + 1e-6).tolist(),
    }


# A data source module of this package registers its loaders here, with the data fields each
# reads beyond name and the batch sizes; adding one is one file.
SOURCES: Registry[Callable[[ml_collections.ConfigDict], Dataset]] = Registry(
    "data source",
    "data.name",
    package=__name__,
    note="Any other name is read as a TFDS dataset (such as mnist, fashion_mnist or cifar10; "
    "see tfds.list_builders()), and TFDS has none by this name.",
    unregistered_reads=(
        "validation_fraction",
        "tfds_data_dir",
        "download",
        "image_size",
        "storage",
    ),
)
# Splits of more decoded bytes than this are read from disk by index when data.storage="auto";
# smaller ones are decoded into memory once, where a batch is a cheap index (README, "Data").
MEMORY_BUDGET_BYTES = 4 << 30


def keep_in_memory(config: ml_collections.ConfigDict, decoded_bytes: int) -> bool:
    """Whether a source holds its splits in memory: data.storage, or by size when "auto"."""
    if config.storage == "auto":
        return decoded_bytes <= MEMORY_BUDGET_BYTES
    return config.storage == "memory"


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


@functools.lru_cache(maxsize=16)  # a vmapped group reads one order per distinct seed
def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The training rows of epoch `epoch` in order: one permutation per (seed, epoch)."""
    order = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)
    order.setflags(write=False)
    return order


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
    With several processes each reads (and decodes) only its own rows of the global batch.
    """
    order = epoch_order(seed, epoch, dataset.size("train"))
    indices = _process_rows(order[step * batch_size : (step + 1) * batch_size], process)
    return take(dataset.splits["train"], indices)


def eval_batches(dataset: Dataset, split: str, batch_size: int, process: tuple[int, int] = (0, 1)):
    """Yields the whole split in order with `mask` 1 on real rows and 0 on the last's padding."""
    n = dataset.size(split)
    for start in range(0, n, batch_size):
        rows = _process_rows(np.arange(start, start + batch_size), process)
        real = rows < n
        batch = take(dataset.splits[split], np.where(real, rows, 0))
        batch["mask"] = real.astype(np.float32)
        yield batch


class Prefetcher:
    """`read(index)` for the next `depth` indices, prepared in a background thread while the
    caller uses the current one. Batches are pure functions of the step, so a batch read ahead
    in vain (a run that stops) costs time, never correctness."""

    def __init__(self, read: Callable[[int], Any], depth: int, limit: int):
        self._read, self._depth, self._limit = read, depth, limit
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        self._ahead: dict[int, Future] = {}
        self._last: tuple[int, Future] | None = None  # asked for again after a compile

    def __call__(self, index: int) -> Any:
        if self._last and self._last[0] == index:
            return self._last[1].result()
        current = self._ahead.pop(index, None) or self._thread.submit(self._read, index)
        self._last = (index, current)
        for stale in [i for i in self._ahead if i < index]:
            self._ahead.pop(stale).cancel()
        for ahead in range(index + 1, min(index + 1 + self._depth, self._limit)):
            if ahead not in self._ahead:
                self._ahead[ahead] = self._thread.submit(self._read, ahead)
        return current.result()

    def close(self) -> None:
        """Drops the batches read ahead and ends the thread once its current read is done."""
        self._thread.shutdown(wait=False, cancel_futures=True)
