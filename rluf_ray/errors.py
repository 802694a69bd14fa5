"""Errors that the CLI reports as one line with a distinct exit code."""

from __future__ import annotations


class RlufError(Exception):
    """A user-facing failure: bad input, a missing upstream artifact, a budget hit."""

    exit_code = 1


class StageNotBuilt(RlufError):
    """The stage exists in the pipeline but has no implementation yet."""

    exit_code = 3


class UpstreamMissing(RlufError):
    """A stage was asked to run before the stages it reads from."""

    exit_code = 4
