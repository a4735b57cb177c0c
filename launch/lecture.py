"""Run one lecture study: `python -m launch.lecture --config=experiments/lecture_NAME.py[:quick]
--workdir=DIR [--config.KEY=VALUE]`; it writes the study's figures and DIR/verdict.md.
"""

import pathlib

from absl import flags

from launch import common
from research import config as config_lib

flags.DEFINE_string("workdir", None, "Output directory (default: runs/<experiment name>).")
FLAGS = flags.FLAGS


def main(argv: list[str], overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        common.fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
    config = common.load_config(overrides)
    module = config_lib.load_module(FLAGS.config.partition(":")[0])
    if not hasattr(module, "run"):
        common.fail(f"{FLAGS.config} is not a lecture study: it defines no run(config, workdir).")
    workdir = pathlib.Path(FLAGS.workdir or f"runs/{config.name}")
    workdir.mkdir(parents=True, exist_ok=True)
    verdict = module.run(config, workdir)
    held = "held" if verdict["held"] else "did not hold"
    print(f"{verdict['title']}: {held}", *verdict["measured"], sep="\n  ", flush=True)
    print(f"verdict and figures in {workdir}", flush=True)


if __name__ == "__main__":
    common.run(main)
