"""Tune an experiment by successive halving: `python -m launch.tune --config=experiments/NAME.py
--workdir=DIR [--trials=27 --eta=3 --min_epochs=1]`; rerunning the same command resumes.

A thin absl main over research.tune: trials drawn from the experiment's search(), trained as
vmapped groups, the worst stopped at each rung; writes DIR/best.json and DIR/report.md.
"""

import pathlib
import sys

from absl import flags

from launch import common
from research.tune import tune
from research.tune_report import write_report

flags.DEFINE_string("workdir", None, "Tune directory (default: runs/<experiment name>_tune).")
flags.DEFINE_integer("trials", 27, "Trials drawn from search() with the config's seed.")
flags.DEFINE_integer("eta", 3, "At each rung the top 1/eta of the trials still training go on.")
flags.DEFINE_integer(
    "min_epochs", 1, "The first rung's epoch; the next ones are min_epochs * eta**k."
)
flags.DEFINE_integer(
    "group_size",
    None,
    "At most this many trials per vmapped program (default: every trial that can share one). "
    "1 trains them one at a time: cheaper per step for conv nets on a CPU, but every trial "
    "then builds and compiles its own programs (README, Tuning, has both measured).",
)
FLAGS = flags.FLAGS


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    config = common.load_config(overrides)
    root = pathlib.Path(FLAGS.workdir or f"runs/{config.name}_tune")
    from research.train.lifecycle import Preempted

    try:
        best = tune(
            FLAGS.config,
            config,
            root,
            trials=FLAGS.trials,
            eta=FLAGS.eta,
            min_epochs=FLAGS.min_epochs,
            group_size=FLAGS.group_size,
        )
    except Preempted as preempted:
        print(preempted, flush=True)
        sys.exit(preempted.exit_code)
    report = write_report(root)
    metric = best["target"]["metric"]
    print(
        f"best trial {best['trial']}: val {metric} {best['best']['val'][metric]:.4f}, test "
        f"{metric} {best['test'][metric]:.4f}; {best['examples_trained']:,} examples trained in "
        f"{best['seconds']:.1f} s; report: {report}\ntrain it with:\n{best['command']}",
        flush=True,
    )


if __name__ == "__main__":
    common.run(main, trains=True)
