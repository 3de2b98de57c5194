"""The package's one base exception; the CLI turns it into a one-line message and exit code 1."""

from __future__ import annotations


class SmallboatError(Exception):
    """A problem the user can act on: the message names the input, what was expected and seen."""


class DataError(SmallboatError):
    """Input data that does not match what a source adapter or the canonical schema expects."""


class QualityGateError(SmallboatError):
    """The warehouse's data-quality tests failed with error severity."""
