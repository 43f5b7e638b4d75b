"""The error every data step raises for bad input, and the reason one file cannot be used."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message lists every problem at once, with the file and the fix."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        self.problems = problems or []
        super().__init__(message)


class _Unusable(Exception):
    """One file cannot be used; the argument is the reason, worded to follow the file's name."""
