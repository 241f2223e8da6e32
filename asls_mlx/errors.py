"""The one error type users see. The CLI turns it into a one-line message and exit code 1."""


class ASLSError(Exception):
    """A problem the user can fix. The message says what is wrong and what to do."""
