"""One error hierarchy: every error the pipeline expects carries the exit code the CLI ends with.

2: the command cannot start (bad flags or values, a missing --repo, a dirty tree, an unreadable
lock file, history or signing key), said before anything is built. 1: a stage or gate ran and
failed or refused. Anything that is not a PipelineError is a bug in the pipeline (exit 3).
"""

from __future__ import annotations

USAGE = 2
FAILED = 1
INTERRUPTED = 130
BUG = 3


class PipelineError(Exception):
    """An expected failure; the first line of its message is the one line the user sees."""

    exit_code = FAILED


class UsageError(PipelineError):
    """The command cannot start: bad input, said before anything is built."""

    exit_code = USAGE


class VersionError(UsageError):
    """A version a run cannot use (a flag, the lock file)."""


class PlatformError(UsageError):
    """A platform list that cannot be built."""


class StageFailure(PipelineError):
    """A check failed: the message says which path, attribute, expected and got."""


class OutputError(PipelineError):
    """What an image or a tool printed cannot be read (a manifest, a version, an SBOM listing)."""


class EngineError(PipelineError):
    """An engine could not do what a stage asked (not a failing command: see RunResult)."""


class RegistryError(PipelineError):
    """The registry refused, could not be reached, or answered something unreadable."""


class RegistryUnreachable(RegistryError):
    """No registry answered: its name does not resolve, or the connection is refused or has no route.

    The one registry failure the local engine may answer with an image of its own: a registry
    that answers (an error, too slowly, with a bad certificate) is never replaced by a guess.
    """


class SigningError(PipelineError):
    """cosign refused, or what it verified is not what was published."""


class HistoryError(PipelineError):
    """doc/build-history.json, or an entry for it, does not validate."""
