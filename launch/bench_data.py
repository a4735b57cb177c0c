"""Time the input pipeline of an experiment with its splits in memory and read from disk.

`python -m launch.bench_data --config=experiments/mnist_lenet.py --config.data.tfds_data_dir=DIR
--repeats=3` runs each storage in a fresh process, alternating them in every repeat (a loaded
machine slows both alike), and prints per storage the median start-up seconds (load and
statistics), peak host memory (RSS) and host milliseconds per training batch, as JSON. The rule
that picks the storage (research.data.keep_in_memory) rests on these figures.

`--jpeg` (on a dataset of JPEGs read with data.image_size, e.g. the ImageNet stand-in) instead
times the decode, resize and center crop of whole batches in one process, in alternating rounds:
our path (research.data.tfds_source: ArrayRecord read, PIL in the research.data.decoders()
threads) against tf.data (TFDS's example parser, tf.io.decode_jpeg, tf.image.resize) and Grain
(--grain_workers processes running the same PIL function), all reading the same rows in the same
order; it reports images/s, per host core and per CPU-second, and how far the pixels differ.
"""

import contextlib
import functools
import importlib.util
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from absl import flags

from launch import common
from research.data import Arrays

flags.DEFINE_integer("repeats", 3, "Times each storage is measured; medians are reported.")
flags.DEFINE_integer("batches", 200, "Training batches read per measurement.")
flags.DEFINE_integer("timeout", 3600, "Seconds any one measurement may take.")
flags.DEFINE_string("storage", None, "Internal: measure this storage in this process.")
flags.DEFINE_bool("jpeg", False, "Time JPEG decode and resize pipelines instead of storages.")
flags.DEFINE_list("pipelines", ["ours", "tf.data", "grain"], "Pipelines that --jpeg compares.")
flags.DEFINE_integer("grain_workers", 2, "Grain's worker processes (worker_count) for --jpeg.")
FLAGS = flags.FLAGS
STORAGES = ("memory", "disk")
PIPELINES = ("ours", "tf.data", "grain")
WARMUP_BATCHES = 3  # untimed per round: worker start-up, tf.data's autotuning


def _measure(overrides: dict[str, str]) -> dict[str, float]:
    """Start-up, peak RSS and host time per batch of this process's storage."""
    from research import data as data_lib

    config = common.load_config({**overrides, "data.storage": FLAGS.storage})
    start = time.perf_counter()
    dataset = data_lib.load(config.data)
    loaded = time.perf_counter() - start
    steps = dataset.size("train") // config.data.batch_size
    start = time.perf_counter()
    for index in range(FLAGS.batches):
        epoch, step = divmod(index, steps)
        data_lib.train_batch(dataset, config.seed, epoch, step, config.data.batch_size)
    per_batch = (time.perf_counter() - start) / FLAGS.batches
    return {
        "startup_s": loaded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ms_per_batch": 1000 * per_batch,
    }


def _pil_example(size: int, channels: int, record: dict) -> Arrays:
    """A TFDS record with its JPEG still encoded, squared by our PIL function (for Grain)."""
    from research.data.tfds_source import _square

    return {"image": _square(record["image"], size, channels), "label": np.int32(record["label"])}


def _tf_example(features, size: int, serialized):
    """The tf.data twin of research.data.tfds_source._square, on a serialized TFDS record:
    TFDS's own parser, then decode, shorter side to `size` (bilinear, antialiased like PIL's)
    and center crop."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    example = features.deserialize_example(
        serialized, decoders={"image": tfds.decode.SkipDecoding()}
    )
    image = tf.io.decode_jpeg(example["image"], channels=features["image"].shape[-1])
    sides = tf.cast(tf.shape(image)[:2], tf.float64)
    new = tf.maximum(size, tf.cast(tf.round(sides * size / tf.reduce_min(sides)), tf.int32))
    image = tf.image.resize(image, new, antialias=True)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    image = tf.saturate_cast(tf.round(image[top : top + size, left : left + size]), tf.uint8)
    return {"image": image, "label": tf.cast(example["label"], tf.int32)}


def _jpeg_pipelines(data_config, rows: int, tmp: str) -> tuple[dict[str, Callable], int]:
    """For each pipeline, a function that starts it, and the rows they cycle through: each
    generates the training split's rows 0..rows-1 in order, over and over, in batches of
    data.batch_size at data.image_size (closing it stops the pipeline's workers)."""
    from research.data import tfds_source

    tfds = tfds_source.import_tfds()
    import tensorflow as tf

    reader = tfds_source.prepared_reader(
        tfds_source.builder(data_config.name, data_config.tfds_data_dir)
    )
    size, batch = data_config.image_size, data_config.batch_size
    records = tfds_source._records(reader, "train", size)
    rows = min(rows, len(records.rows)) // batch * batch

    def ours():
        for start in itertools.count(0, batch):
            yield records.take(np.arange(start, start + batch) % rows)

    # TFDS reads ArrayRecord only by index (as_dataset wants TFRecord), so tf.data reads a
    # TFRecord copy of the same serialized records through TFDS's parser, as as_dataset would.
    copy = os.path.join(tmp, "train.tfrecord")
    raw = reader.as_data_source("train", deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    with tf.io.TFRecordWriter(copy) as writer:
        for start in range(0, rows, 1024):
            for record in raw.__getitems__(list(range(start, min(start + 1024, rows)))):
                writer.write(record)
    square = functools.partial(_tf_example, reader.info.features, size)

    def tf_data():
        dataset = tf.data.TFRecordDataset(copy).repeat().map(square, tf.data.AUTOTUNE)
        dataset = dataset.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
        yield from dataset.as_numpy_iterator()  # closed, it drops the iterator and its threads

    def grain():
        import grain.python as grain_lib

        source = reader.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
        channels = reader.info.features["image"].shape[-1]
        dataset = grain_lib.MapDataset.source(source).slice(slice(rows)).repeat()
        dataset = dataset.map(functools.partial(_pil_example, size, channels)).batch(batch)
        # One batch at a time per worker, as in our threads: Grain's default (16 threads and
        # 500 elements ahead per worker) would decode batches before the clock starts.
        dataset = dataset.to_iter_dataset(
            grain_lib.ReadOptions(num_threads=1, prefetch_buffer_size=1)
        )
        options = grain_lib.MultiprocessingOptions(num_workers=FLAGS.grain_workers)
        iterator = iter(dataset.mp_prefetch(options))
        try:
            yield from iterator
        finally:
            iterator.close()

    return {"ours": ours, "tf.data": tf_data, "grain": grain}, rows


def _cpu_seconds() -> float:
    """CPU time of this process's threads and of its live child processes (Grain's workers)."""
    import psutil

    children = psutil.Process().children(recursive=True)
    return time.process_time() + sum(sum(c.cpu_times()[:2]) for c in children)


def _time_pipeline(start, batches: int) -> tuple[dict, Arrays]:
    """One round: the pipeline started afresh, WARMUP_BATCHES untimed, then `batches` timed."""
    with contextlib.closing(start()) as pipeline:
        first = {key: np.asarray(value) for key, value in next(pipeline).items()}
        for _ in range(WARMUP_BATCHES - 1):
            next(pipeline)
        cpu, wall = _cpu_seconds(), time.perf_counter()
        for _ in range(batches):
            next(pipeline)
        cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    images = batches * len(first["label"])
    cores = len(os.sched_getaffinity(0))
    timing = {
        "ms_per_batch": 1000 * wall / batches,
        "images_per_s": images / wall,
        "images_per_s_per_core": images / wall / cores,
        "images_per_cpu_s": images / cpu,
    }
    return timing, first


def _compare(batch: Arrays, ours: Arrays) -> dict:
    """A pipeline's first batch against ours: shapes, labels and pixel differences."""
    same_shape = all(batch[key].shape == ours[key].shape for key in ours)
    difference = np.abs(batch["image"].astype(np.int16) - ours["image"]) if same_shape else None
    return {
        "shapes": {key: list(value.shape) for key, value in batch.items()},
        "dtypes": {key: str(value.dtype) for key, value in batch.items()},
        "labels_equal_ours": same_shape and bool(np.array_equal(batch["label"], ours["label"])),
        "mean_abs_diff_vs_ours": None if difference is None else float(difference.mean()),
        "max_abs_diff_vs_ours": None if difference is None else int(difference.max()),
    }


def jpeg(overrides: dict[str, str]) -> dict:
    """The --jpeg comparison: rounds of every pipeline in turn, the order rotating per round."""
    config = common.load_config(overrides)
    unknown = set(FLAGS.pipelines) - set(PIPELINES)
    if unknown or "ours" not in FLAGS.pipelines or not config.data.get("image_size"):
        common.fail(
            f"--jpeg needs data.image_size and --pipelines among {PIPELINES}, with ours; got "
            f"image_size={config.data.get('image_size')} and {FLAGS.pipelines}."
        )
    names = list(dict.fromkeys(FLAGS.pipelines))
    if "grain" in names and importlib.util.find_spec("grain") is None:
        common.fail("Grain is not installed: `pip install grain`, or --pipelines=ours,tf.data.")
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        needed = (WARMUP_BATCHES + FLAGS.batches) * config.data.batch_size
        starts, rows = _jpeg_pipelines(config.data, needed, tmp)
        rounds, firsts = {name: [] for name in names}, {}
        for repeat in range(FLAGS.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                timing, firsts[name] = _time_pipeline(starts[name], FLAGS.batches)
                rounds[name].append(timing)
    medians = {
        name: {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
        for name, runs in rounds.items()
    }
    ours = rounds["ours"]
    ratios = {  # images/s over ours, round by round (every list has FLAGS.repeats)
        name: [r["images_per_s"] / o["images_per_s"] for r, o in zip(runs, ours, strict=True)]
        for name, runs in rounds.items()
        if name != "ours"
    }
    return {
        "setup": {
            "batch_size": config.data.batch_size,
            "image_size": config.data.image_size,
            "timed_batches": FLAGS.batches,
            "rows_cycled": rows,
            "cores": len(os.sched_getaffinity(0)),
            "grain_workers": FLAGS.grain_workers,
            "load_average_before_after": [round(load[0], 2), round(os.getloadavg()[0], 2)],
        },
        "batches": {name: _compare(first, firsts["ours"]) for name, first in firsts.items()},
        "medians": medians,
        "images_per_s_over_ours": {
            name: {"median": round(statistics.median(r), 3), "range": [min(r), max(r)]}
            for name, r in ratios.items()
        },
        "rounds": rounds,
    }


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    if FLAGS.repeats < 1 or FLAGS.batches < 1:
        common.fail("--repeats and --batches must be at least 1.")
    if FLAGS.jpeg:
        print(json.dumps(jpeg(overrides), indent=1))
        return
    if FLAGS.storage:
        print(json.dumps(_measure(overrides)))
        return
    common.load_config(overrides)  # refuses a bad experiment or override before any timing
    rounds = {storage: [] for storage in STORAGES}
    for _ in range(FLAGS.repeats):
        for storage in STORAGES:
            command = [sys.executable, "-m", "launch.bench_data", *sys.argv[1:]]
            result = subprocess.run(
                [*command, f"--storage={storage}"],
                capture_output=True,
                text=True,
                timeout=FLAGS.timeout,
            )
            if result.returncode:
                common.fail(f"the {storage} measurement failed:\n{result.stderr[-2000:]}")
            rounds[storage].append(json.loads(result.stdout.strip().splitlines()[-1]))
    medians = {
        storage: {key: round(statistics.median(r[key] for r in runs), 3) for key in runs[0]}
        for storage, runs in rounds.items()
    }
    print(json.dumps({"medians": medians, "rounds": rounds}, indent=1))


if __name__ == "__main__":
    common.run(main)
