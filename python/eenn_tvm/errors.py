"""The one exception type for bad input.

Raised with a single line that names the problem and says what to do; the command line prints it and
exits with code 2. Anything else that escapes is a bug in eenn-tvm, not in the user's input.
"""


class EennError(Exception):
    """Bad input from the user: a broken model, mismatched data, impossible constraints."""


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanup runs; like KeyboardInterrupt, no `except Exception`
    catches it."""
