"""Time the input pipeline of an experiment with its splits in memory and read from disk.

`python -m launch.bench_data --config=experiments/mnist_lenet.py --config.data.tfds_data_dir=DIR
--repeats=3` runs each storage in a fresh process, alternating them in every repeat (a loaded
machine slows both alike), and prints per storage the median start-up seconds (load and
statistics), peak host memory (RSS) and host milliseconds per training batch, as JSON. The rule
that picks the storage (research.data.keep_in_memory) rests on these figures.
"""

import json
import resource
import statistics
import subprocess
import sys
import time

from absl import flags

from launch import common

flags.DEFINE_integer("repeats", 3, "Times each storage is measured; medians are reported.")
flags.DEFINE_integer("batches", 200, "Training batches read per measurement.")
flags.DEFINE_integer("timeout", 3600, "Seconds any one measurement may take.")
flags.DEFINE_string("storage", None, "Internal: measure this storage in this process.")
FLAGS = flags.FLAGS
STORAGES = ("memory", "disk")


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


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    if FLAGS.repeats < 1 or FLAGS.batches < 1:
        common.fail("--repeats and --batches must be at least 1.")
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
