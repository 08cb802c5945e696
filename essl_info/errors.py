"""Exceptions for user mistakes. The CLI turns these (and ``ValueError``s raised by input
validation) into a one-line message and exit code 2; anything else is a bug and keeps its
traceback."""


class EsslInfoError(ValueError):
    """Base class: a problem with the user's input, not with the library."""


class CheckpointError(EsslInfoError):
    """A file that is missing, truncated, not a checkpoint, or unsafe to load."""


class DataError(EsslInfoError):
    """A dataset that cannot be found or read, or features that cannot be measured."""
