"""Run launch.train on a multi-node SLURM allocation: prints an sbatch script, or submits it.

`python -m launch.slurm_multinode --nodes=2 --gpus_per_node=8 [--submit] -- --config=... ...`.
srun starts one task per GPU (or per host); JAX reads SLURM's variables to join them.
"""

import pathlib
import shlex
import subprocess
import sys

from absl import app, flags

flags.DEFINE_integer("nodes", 1, "Number of nodes.")
flags.DEFINE_integer("gpus_per_node", 0, "GPUs per node (0: CPU nodes, one process per host).")
flags.DEFINE_enum("process_per", "gpu", ["gpu", "host"], "One process per GPU or per host.")
flags.DEFINE_string("partition", None, "SLURM partition.")
flags.DEFINE_string("account", None, "SLURM account.")
flags.DEFINE_string("time", "24:00:00", "Time limit, HH:MM:SS.")
flags.DEFINE_integer("cpus_per_task", None, "CPUs per task (default: SLURM's).")
flags.DEFINE_string("job_name", "research", "Job name.")
flags.DEFINE_integer(
    "term_before_s",
    120,
    "SLURM sends SIGTERM this long before the time limit, so every task saves and exits 0.",
)
flags.DEFINE_string("python", ".venv/bin/python", "Python on the nodes, relative to the repo.")
flags.DEFINE_bool("submit", False, "Submit with sbatch instead of printing the script.")
FLAGS = flags.FLAGS


def sbatch_script(
    train_args: list[str],
    *,
    nodes: int,
    gpus_per_node: int,
    process_per: str,
    time: str,
    job_name: str,
    term_before_s: int,
    repo: pathlib.Path,
    python: str,
    partition: str | None = None,
    account: str | None = None,
    cpus_per_task: int | None = None,
) -> str:
    """The batch script: one srun step whose tasks are the processes of one JAX run."""
    per_gpu = process_per == "gpu" and gpus_per_node > 0
    options = {
        "job-name": job_name,
        "nodes": nodes,
        "ntasks-per-node": gpus_per_node if per_gpu else 1,
        "gpus-per-node": gpus_per_node or None,
        "cpus-per-task": cpus_per_task,
        "partition": partition,
        "account": account,
        "time": time,
        "signal": f"TERM@{term_before_s}",
        "output": "slurm_logs/%x-%j.out",
        "open-mode": "append",
    }
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH --{key}={value}" for key, value in options.items() if value is not None]
    lines += ["#SBATCH --requeue", "", f"cd {shlex.quote(str(repo))}"]
    if not per_gpu and gpus_per_node:
        # JAX on SLURM gives each task the GPU of its local rank; one task per host takes all.
        lines.append(f"export JAX_LOCAL_DEVICE_IDS={','.join(map(str, range(gpus_per_node)))}")
    command = [python, "-m", "launch.train", *train_args]
    lines += [f"srun --kill-on-bad-exit=1 {shlex.join(command)}", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    script = sbatch_script(
        argv[1:],
        nodes=FLAGS.nodes,
        gpus_per_node=FLAGS.gpus_per_node,
        process_per=FLAGS.process_per,
        time=FLAGS.time,
        job_name=FLAGS.job_name,
        term_before_s=FLAGS.term_before_s,
        repo=pathlib.Path.cwd(),
        python=FLAGS.python,
        partition=FLAGS.partition,
        account=FLAGS.account,
        cpus_per_task=FLAGS.cpus_per_task,
    )
    if not FLAGS.submit:
        print(script, end="")
        return
    pathlib.Path("slurm_logs").mkdir(exist_ok=True)  # SLURM opens --output before the script.
    sys.exit(subprocess.run(["sbatch"], input=script, text=True).returncode)


if __name__ == "__main__":
    app.run(main)
