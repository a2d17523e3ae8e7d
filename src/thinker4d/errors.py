"""The one exception class for mistakes of the user: a bad flag value, a missing file, a bad config or data row.

`thinker4d <verb>` prints its message on one line and exits with status 2 (`--debug` or `THINKER4D_DEBUG=1` prints the
traceback as well). Every other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user passed; the message names the flag, file, row or field and says what to do.

    Example:

    ```python
    >>> from thinker4d.errors import UserError
    >>> raise UserError("--model_name_or_path /nope: the local path does not exist.")  # doctest: +SKIP
    ```
    """


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (still a `FileNotFoundError` for Python callers)."""


class UserValueError(UserError, ValueError):
    """A value the user gave is invalid (still a `ValueError` for Python callers)."""


__all__ = ["UserError", "UserFileNotFoundError", "UserValueError"]
