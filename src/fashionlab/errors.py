"""User-facing errors.

Anything a user can cause (bad file, bad config, unknown model) raises a subclass of
`FashionlabError`. The CLI prints its message on one line and exits non-zero without a
traceback; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FashionlabError(Exception):
    """An error the user can fix; the message says what is wrong and what to do."""

    exit_code = 2


class DataError(FashionlabError):
    """The dataset files are missing, corrupt or do not match the expected checksums."""


class ConfigError(FashionlabError):
    """A configuration value or key is invalid."""


class RunError(FashionlabError):
    """A run folder is missing, incomplete, corrupt, or would be overwritten."""


class TrainingDiverged(FashionlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class ImageError(FashionlabError):
    """An input image cannot be decoded or is unsuitable."""


def one_line(text: object, limit: int = 300) -> str:
    """`text` (an exception or any message) as one line of at most `limit` characters, for
    error messages that quote something we did not write (a library's error, a user's input)."""
    flat = " ".join(str(text).split())
    if not flat and isinstance(text, BaseException):
        flat = type(text).__name__
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
