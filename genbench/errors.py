"""Errors a user can cause.

Anything raised as a GenbenchError is the user's to fix (a bad path, a corrupt file,
an unknown name, a bad config). The CLI prints its message -- which names the cause and
the fix -- and exits with code 2, without a traceback. Everything else is a bug in
genbench and keeps its traceback.
"""


class GenbenchError(Exception):
    """A problem the user can fix; the message says what and how."""


class DataError(GenbenchError):
    """A dataset could not be loaded: missing path, corrupt or unexpected file."""


class ConfigError(GenbenchError):
    """A run, suite or option is invalid (unknown key, wrong type, bad value)."""


class UnknownNameError(ConfigError):
    """A name that is not in its registry."""
