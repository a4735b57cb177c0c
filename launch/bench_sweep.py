"""Time a learning-rate sweep three ways, side by side: N separate `launch.train` launches, one
vmapped group (`launch.sweep --executor=vmap`), and that group on D simulated CPU devices.

`python -m launch.bench_sweep --config=experiments/digits_mlp.py --points=8 --repeats=3`
alternates the three in every repeat (so a loaded machine slows them alike) and prints the
median seconds and the ratios as JSON.
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags

from launch import common

flags.DEFINE_integer("points", 8, "Learning rates in the sweep: 1e-3 x (1 .. points).")
flags.DEFINE_integer("repeats", 1, "Times each way is measured; medians are reported.")
flags.DEFINE_integer("devices", 8, "Simulated CPU devices for the third way.")
flags.DEFINE_integer("timeout", 3600, "Seconds any one command may take.")
FLAGS = flags.FLAGS

SWEEP = """
import runpy

from research.sweep import axis

get_config = runpy.run_path({path!r})["get_config"]


def sweep():
    return axis("optimizer.learning_rate", {rates!r})
"""


def _timed(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", *command],
        check=True,
        capture_output=True,
        timeout=FLAGS.timeout,
        env={**os.environ, **(env or {})},
    )
    return time.perf_counter() - start


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    if FLAGS.points < 1 or FLAGS.repeats < 1 or FLAGS.devices < 1:
        common.fail("--points, --repeats and --devices must be at least 1.")
    common.load_config(overrides)  # refuses a bad experiment or override before any timing
    rates = [round(1e-3 * (i + 1), 6) for i in range(FLAGS.points)]
    flags_ = [f"--config.{k}={v}" for k, v in overrides.items()]
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        spec = root / "sweep.py"
        spec.write_text(SWEEP.format(path=str(pathlib.Path(FLAGS.config).resolve()), rates=rates))
        devices = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={FLAGS.devices}"}
        ways = {
            "separate": lambda r: sum(
                _timed(["launch.train", f"--config={FLAGS.config}", *flags_,
                        f"--config.optimizer.learning_rate={rate}",
                        f"--workdir={root / f'separate{r}' / str(i)}"])
                for i, rate in enumerate(rates)
            ),
            "vmap": lambda r: _timed(["launch.sweep", f"--config={spec}", "--executor=vmap",
                                      *flags_, f"--workdir={root / f'vmap{r}'}"]),
            f"vmap_{FLAGS.devices}_devices": lambda r: _timed(
                ["launch.sweep", f"--config={spec}", "--executor=vmap", *flags_,
                 f"--workdir={root / f'devices{r}'}"], devices),
        }  # fmt: skip
        seconds = {name: [] for name in ways}
        for repeat in range(FLAGS.repeats):
            order = list(ways) if repeat % 2 == 0 else list(reversed(ways))
            for name in order:
                seconds[name].append(ways[name](repeat))
                print(f"repeat {repeat + 1}: {name} {seconds[name][-1]:.1f} s", flush=True)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    result = {
        "config": FLAGS.config,
        "points": FLAGS.points,
        "seconds": seconds,
        "median_seconds": medians,
        "vmap_speedup_over_separate": medians["separate"] / medians["vmap"],
        "devices_over_one_device": medians["vmap"] / medians[f"vmap_{FLAGS.devices}_devices"],
    }
    print(json.dumps(result, indent=2), flush=True)


if __name__ == "__main__":
    common.run(main)
