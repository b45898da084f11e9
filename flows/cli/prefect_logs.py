"""Prefect's failure logs on the terminal: said once, by the command, unless ``--debug``."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

#: The loggers of flow runs and task runs, whose failure records repeat the command's error.
RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_FAILED_STATE = re.compile(r"^Finished in state (Failed|Crashed|TimedOut)\b")


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


class _WithoutFailures(logging.Filter):
    """Drops the records a flow or task run logs when it fails.

    A failed task logs the exception, then its Failed state; the flow logs the exception
    again, then its own state; the command then prints the same error as its ``error:``
    line. Only the last is kept: records of other loggers, and the runs' other records
    (progress, warnings), pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(RUN_LOGGERS):
            return True
        if record.levelno >= logging.ERROR:
            return False
        return not _FAILED_STATE.match(record.getMessage())


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
    """Leave the reporting of a failure to the command's ``error:`` line unless ``shown``.

    Prefect logs every failed task and flow with its full traceback, four records for one
    bad input. The command's own ``error: ...`` line says all there is to say, and a
    screen of engine frames buries it; ``--debug`` shows them all. Only the terminal
    handlers change: the logs sent to the Prefect API (and its UI) keep every record and
    traceback. Other records keep their line and lose any traceback.
    """
    if shown:
        yield
        return
    changed = [(handler, handler.formatter) for handler in _console_handlers()]
    quiet = _WithoutFailures()
    for handler, formatter in changed:
        handler.setFormatter(_WithoutTraceback(formatter))
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler, formatter in changed:
            handler.setFormatter(formatter)
            handler.removeFilter(quiet)
