"""What every entry point shares: `--config=FILE[:ARG]` with `--config.KEY=VALUE` overrides,
validated before anything runs, and turning a `UserError` into one paragraph on stderr and exit
status 2.
"""

import functools
import os
import signal
import sys
from collections.abc import Callable

from absl import app, flags, logging

from research import config as config_lib
from research.errors import UserError, stop_exit_code
from research.validation import validate

flags.DEFINE_string(
    "config",
    config_lib.DEFAULT_EXPERIMENT,
    "Experiment file and optional argument: experiments/NAME.py[:ARG], ARG being key=value pairs "
    "separated by commas over the keys the file's get_config declares. Override any field "
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


def load_config(overrides: dict[str, str], spec: str | None = None):
    """The validated config of `spec` (default: --config) with the overrides applied."""
    config = config_lib.load(spec or FLAGS.config)
    config.unlock()  # Overrides may only replace values; override() checks keys and types.
    config_lib.apply_overrides(config, overrides)
    config.lock()
    validate(config)
    return config


def step_range(text: str) -> tuple[int, int]:
    """--profile_steps=START:END as (START, END); exits 2 otherwise."""
    start, _, end = text.partition(":")
    if not (start.isdigit() and end.isdigit() and int(start) < int(end)):
        fail(
            f"--profile_steps={text!r} is not START:END with integers 0 <= START < END "
            "(the steps to trace, END excluded), e.g. --profile_steps=10:20."
        )
    return int(start), int(end)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _stop_before_work(number: int, frame) -> None:
    """A stop signal outside the training loop's handler (start-up, or between the groups of a
    sweep or tune, whose finished parts are saved): nothing is in progress, so exit at once
    (an exception raised here could land in a callback that swallows it)."""
    name = signal.Signals(number).name
    print(
        f"preempted ({name}) outside training; nothing in progress to save; rerun the same "
        "command to start or go on",
        flush=True,
    )
    os._exit(stop_exit_code(number))


def run(main: Callable[[list[str], dict[str, str]], None], trains: bool = False) -> None:
    """absl's app.run for a main that also receives the config overrides. For entry points
    that train (`trains`), SIGTERM and Ctrl-C end start-up cleanly until the training loop
    takes them over."""
    if trains:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, _stop_before_work)
    argv, overrides = split_overrides(sys.argv)

    def guarded(argv):
        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
        try:
            main(argv, overrides)
        except UserError as error:
            fail(str(error))

    app.run(functools.partial(guarded), argv=argv)
