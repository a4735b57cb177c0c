"""Train one experiment: `python -m launch.train --config=experiments/NAME.py[:ARG] --workdir=DIR`.

Rerunning the same command on the same workdir resumes; SIGTERM saves and exits 0;
SIGUSR1 (`kill -USR1 PID`) prints every thread's Python stack to stderr and the run goes on,
to see where a hung run, say one process of a multi-process run, is waiting.
"""

import faulthandler
import pathlib
import signal
import sys

from absl import flags

from launch import common

flags.DEFINE_string("workdir", None, "Run directory (default: runs/<experiment name>).")
flags.DEFINE_bool("overwrite", False, "Delete the workdir's run record and start over.")
flags.DEFINE_string(
    "coordinator_address",
    None,
    "HOST:PORT of process 0 in a multi-process run, with --num_processes and --process_id. "
    "Not needed on SLURM (srun, several tasks) or Cloud TPU VMs, which are detected.",
)
flags.DEFINE_integer("num_processes", None, "Number of processes in the run.")
flags.DEFINE_integer("process_id", None, "This process's index, 0 to num_processes - 1.")
flags.DEFINE_integer(
    "distributed_timeout", 600, "Seconds to wait for every process to join the run."
)
flags.DEFINE_integer(
    "heartbeat_timeout",
    100,
    "Seconds of silence after which a process counts as dead and the others abort.",
)
flags.DEFINE_bool(
    "deterministic_gpu",
    False,
    "Deterministic GPU reductions (--xla_gpu_deterministic_ops), for bitwise reruns; slower.",
)
flags.DEFINE_string(
    "profile_steps",
    None,
    "START:END: a jax.profiler trace of steps START to END - 1 into WORKDIR/profile (the same as "
    "--config.train.profile_steps='(START, END)').",
)
FLAGS = flags.FLAGS


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    if FLAGS.profile_steps is not None:
        steps = common.step_range(FLAGS.profile_steps)
        overrides = {**overrides, "train.profile_steps": str(steps)}
    config = common.load_config(overrides)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    from research.train import distributed

    if FLAGS.deterministic_gpu:
        distributed.request_deterministic_gpu()
    distributed.initialize(
        FLAGS.coordinator_address,
        FLAGS.num_processes,
        FLAGS.process_id,
        FLAGS.distributed_timeout,
        FLAGS.heartbeat_timeout,
    )
    from research.train.loop import Preempted, train_and_evaluate

    workdir = pathlib.Path(FLAGS.workdir or f"runs/{config.name}")
    try:
        summary = train_and_evaluate(config, workdir, overwrite=FLAGS.overwrite)
    except Preempted as preempted:
        print(preempted, flush=True)
        sys.exit(preempted.exit_code)
    best, test = summary["best"], summary["test"]
    target = summary["target"]["metric"]
    print(
        f"{config.name}: best val {target} {best['val'][target]:.4f} at epoch {best['epoch']}; "
        f"test {target} {test[target]:.4f}; {summary['examples_per_sec']:,.0f} examples/s; "
        f"run record in {workdir}",
        flush=True,
    )


if __name__ == "__main__":
    common.run(main, trains=True)
