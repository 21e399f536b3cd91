"""Errors that carry a message meant for the user (printed as one line, no traceback)."""


class UserError(Exception):
    """A mistake in the user's input: a file, a config value or an argument.

    The message must name the file or option and say what is wrong, in one line.
    The command line prints ``error: <message>`` and exits with status 2.
    """


class DataError(UserError):
    """A dataset on disk is missing, malformed or inconsistent."""


class ConfigError(UserError):
    """A config file or override is invalid."""
