"""Errors that mean "the user asked for something that cannot be done", as opposed to a bug.

The CLI prints these as one line and exits with status 2; Python callers catch them by type.
"""

from __future__ import annotations


class AiqSearchError(Exception):
    """Bad input or an unusable environment, with a message that names the problem."""


class ConfigError(AiqSearchError):
    """A study file (or an option overriding it) is invalid."""


class StorageError(AiqSearchError):
    """The study storage cannot be reached or does not hold what was asked for."""


class DataError(AiqSearchError):
    """A data set is unknown or its files are missing."""
