"""One exception family: every error says what was wrong and what to do about it.

Each class also derives from the builtin a caller would naturally catch (``ValueError``
for bad input, ``RuntimeError`` for failed training), so generic handlers keep working.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFitted


class VAEAnomalyError(Exception):
    """Base class of every error raised by ``vae_core``."""


class InputError(VAEAnomalyError, ValueError):
    """The data handed to the detector cannot be used as given."""


class EmptyInputError(InputError):
    """The input has no rows or no usable feature columns."""


class TooFewRowsError(InputError):
    """Not enough rows to train and hold out a validation split."""


class SchemaError(InputError):
    """A column is missing, or the columns do not match the fitted schema."""


class ColumnTypeError(SchemaError):
    """A column holds values of a type the fitted schema does not allow."""


class NonFiniteLossError(VAEAnomalyError, RuntimeError):
    """Training produced a NaN or infinite loss."""


class ModelFileError(VAEAnomalyError, OSError):
    """A saved model is missing, corrupt, tampered with or from an incompatible version."""


class NotFittedError(VAEAnomalyError, _SklearnNotFitted):
    """The detector was used before ``fit`` or ``load``."""


class OutputPathError(VAEAnomalyError, OSError):
    """An output path cannot be written: it is a device or a folder, or it is read-only."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when the message is empty), for a
    one-line error that cites a library's longer explanation."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def one_line(exc: BaseException, limit: int = 500) -> str:
    """The whole message on one line, at most ``limit`` characters: for messages whose
    reason comes after the first line break."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
