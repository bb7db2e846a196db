"""One exception type for mistakes a user can fix.

The command line prints a `WMError` as a single paragraph (no traceback) and exits with code 2, so
every message must say what was wrong *and* what to do about it.
"""


class WMError(Exception):
    """A user-facing error whose message names the problem and the fix."""
