"""Prefect's failure logs on the terminal: one line each unless ``--debug``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class _WithoutTraceback(logging.Formatter):
    """Formats a record as ``inner`` would, minus any traceback or stack."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _console_handlers() -> list[logging.Handler]:
    """Stream handlers of the root and the ``prefect`` loggers (the terminal, not the API)."""
    loggers = [logging.getLogger()] + [
        logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("prefect") and isinstance(logger, logging.Logger)
    ]
    handlers = {
        id(h): h for lg in loggers for h in lg.handlers if isinstance(h, logging.StreamHandler)
    }
    return list(handlers.values())


@contextlib.contextmanager
def console_tracebacks(shown: bool) -> Iterator[None]:
    """Keep Prefect's failure logs on the terminal to one line each unless ``shown``.

    Prefect logs every failed task and flow with its full traceback. For a bad input the
    command's own ``error: ...`` line says all there is to say, and a screen of engine
    frames buries it; ``--debug`` shows them. Only the terminal handlers change: the logs
    sent to the Prefect API (and its UI) keep their tracebacks.
    """
    if shown:
        yield
        return
    changed = [(handler, handler.formatter) for handler in _console_handlers()]
    for handler, formatter in changed:
        handler.setFormatter(_WithoutTraceback(formatter))
    try:
        yield
    finally:
        for handler, formatter in changed:
            handler.setFormatter(formatter)
