"""Run launch.train on every worker of a Cloud TPU VM slice through `gcloud ... ssh --worker=all`.

`python -m launch.tpu_vm --tpu=NAME --zone=ZONE [--run] -- --config=... --workdir=SHARED_DIR`
prints the command (or runs it with --run); each worker joins through JAX's TPU detection.
"""

import shlex
import subprocess
import sys

from absl import app, flags

flags.DEFINE_string("tpu", None, "TPU VM name.", required=True)
flags.DEFINE_string("zone", None, "TPU VM zone, e.g. us-central2-b.", required=True)
flags.DEFINE_string("project", None, "Google Cloud project (default: gcloud's).")
flags.DEFINE_string("repo", "~/research", "The repository's path on the workers.")
flags.DEFINE_string(
    "worker_python", ".venv/bin/python", "Python on the workers, relative to --repo."
)
flags.DEFINE_bool("run", False, "Run the command instead of printing it.")
FLAGS = flags.FLAGS


def gcloud_command(
    train_args: list[str], tpu: str, zone: str, repo: str, python: str, project: str | None
) -> list[str]:
    """The same `launch.train` command on all workers at once (they must start together)."""
    remote = f"cd {repo} && {shlex.join([python, '-m', 'launch.train', *train_args])}"
    command = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, f"--zone={zone}"]
    if project:
        command.append(f"--project={project}")
    return [*command, "--worker=all", f"--command={remote}"]


def main(argv: list[str]) -> None:
    command = gcloud_command(
        argv[1:], FLAGS.tpu, FLAGS.zone, FLAGS.repo, FLAGS.worker_python, FLAGS.project
    )
    if not FLAGS.run:
        print(shlex.join(command))
        return
    sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    app.run(main)
