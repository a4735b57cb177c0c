"""The one exception type for mistakes a user can fix; entry points print it without a traceback.
Also the exit status of a stopped run, which every entry point shares."""

import signal


class UserError(Exception):
    """Bad input (config, flags, data, workdir): the message says what was wrong and the fix."""


def stop_exit_code(number: int) -> int:
    """A run stopped by signal `number` exits 0 on SIGTERM (a preemption, not a failure), else
    128 + number as the shell reports a signal (130 for Ctrl-C)."""
    return 0 if number == signal.SIGTERM else 128 + number
