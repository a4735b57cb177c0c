"""The one exception type for mistakes a user can fix; entry points print it without a traceback."""


class UserError(Exception):
    """Bad input (config, flags, data, workdir): the message says what was wrong and the fix."""
