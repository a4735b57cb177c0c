"""What every entry point shares: `--config=FILE[:ARG]` with `--config.KEY=VALUE` overrides,
and turning a `UserError` into one paragraph on stderr and exit status 2.
"""

import functools
import sys
from collections.abc import Callable

from absl import app, flags, logging

from research import config as config_lib
from research.errors import UserError

flags.DEFINE_string(
    "config",
    config_lib.DEFAULT_EXPERIMENT,
    "Experiment file and optional argument: experiments/NAME.py[:ARG]. Override any field "
    "with --config.KEY=VALUE (dotted keys, e.g. --config.optimizer.learning_rate=0.01).",
)
FLAGS = flags.FLAGS


def split_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Separates `--config.KEY=VALUE` (or `--config.KEY VALUE`) from the flags absl parses."""
    rest, overrides = [], {}
    args = iter(argv)
    for arg in args:
        if arg.startswith("--config."):
            key, sep, value = arg[len("--config.") :].partition("=")
            overrides[key] = value if sep else next(args, "")
        else:
            rest.append(arg)
    return rest, overrides


def load_config(overrides: dict[str, str]):
    config = config_lib.load(FLAGS.config)
    config.unlock()  # Overrides may only replace values; override() checks keys and types.
    config_lib.apply_overrides(config, overrides)
    config.lock()
    return config


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run(main: Callable[[list[str], dict[str, str]], None]) -> None:
    """absl's app.run for a main that also receives the config overrides."""
    argv, overrides = split_overrides(sys.argv)

    def guarded(argv):
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
        try:
            main(argv, overrides)
        except UserError as error:
            fail(str(error))

    app.run(functools.partial(guarded), argv=argv)
