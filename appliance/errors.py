"""Errors that end a command with one line telling the operator what to fix."""


class OperatorError(Exception):
    """A problem the operator can fix; the CLI prints the message and exits with code 2."""

    exit_code = 2


class ConfigError(OperatorError):
    """The configuration file or a CLINICBOX_* variable is invalid."""


class StartupError(OperatorError):
    """The service cannot start: data dir unwritable, port in use, ..."""
