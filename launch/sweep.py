"""Run an experiment's sweep: `python -m launch.sweep --config=experiments/NAME.py --workdir=DIR
--executor=local|vmap|slurm`; rerunning the same command skips finished points.

A thin absl main over research.sweep_run; `--config.KEY=VALUE` overrides apply to every point.
"""

import pathlib
import sys

from absl import flags

from launch import common
from research.sweep_run import EXECUTORS, SlurmOptions, load_points, run_sweep

flags.DEFINE_string("workdir", None, "Sweep directory (default: runs/<experiment name>_sweep).")
flags.DEFINE_enum("executor", "local", EXECUTORS, "How the points run.")
flags.DEFINE_integer(
    "parallel",
    1,
    "local: worker processes (1: one after another in this process); "
    "slurm: array tasks running at once.",
)
flags.DEFINE_string("submitit_cluster", "slurm", "slurm: submitit cluster (local/debug: here).")
flags.DEFINE_integer("timeout_min", 60, "slurm: time limit of each array task, in minutes.")
flags.DEFINE_integer("gpus_per_node", 0, "slurm: GPUs for each array task.")
flags.DEFINE_integer("cpus_per_task", 2, "slurm: CPU cores for each array task.")
flags.DEFINE_string("slurm_partition", None, "slurm: partition to submit to.")
FLAGS = flags.FLAGS


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    config = common.load_config(overrides)
    points = load_points(FLAGS.config, config)
    root = pathlib.Path(FLAGS.workdir or f"runs/{config.name}_sweep")
    slurm = SlurmOptions(
        cluster=FLAGS.submitit_cluster,
        array_parallelism=FLAGS.parallel,
        timeout_min=FLAGS.timeout_min,
        gpus_per_node=FLAGS.gpus_per_node,
        cpus_per_task=FLAGS.cpus_per_task,
        partition=FLAGS.slurm_partition,
    )
    print(f"{config.name}: {len(points)} points into {root} ({FLAGS.executor})", flush=True)
    outcome = run_sweep(
        FLAGS.config,
        points,
        root,
        FLAGS.executor,
        parallel=FLAGS.parallel,
        overrides=overrides,
        slurm=slurm,
    )
    for name in outcome.failed:
        print(f"failed: {name} (see {root / name / 'error.txt'})")
    print(f"report: {root / 'report.md'}")
    print(f"{outcome.line()} in {outcome.seconds:.1f} s", flush=True)
    if outcome.stopped:
        sys.exit(outcome.stopped)
    if outcome.failed:
        sys.exit(1)


if __name__ == "__main__":
    common.run(main, trains=True)
