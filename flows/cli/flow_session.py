"""Around a flow command: its Prefect API, and its terminal.

``flow_session`` is entered after the settings and paths were checked, and before the flows
are imported (seconds: torch, MLflow, Prefect): a local server the command owns, when no
API is configured, starts meanwhile. ``ready()`` waits for it and quiets Prefect's failure
logs on the terminal; leaving the block stops the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flows.cli.local_server import LocalServer, owned_server
from flows.cli.prefect_logs import console_tracebacks


class FlowSession:
    """What ``flow_session`` yields: the owned server (None: a configured API is used)."""

    def __init__(self, server: LocalServer | None, debug: bool, stack: contextlib.ExitStack):
        self.server = server
        self._debug = debug
        self._stack = stack

    def ready(self) -> None:
        """Wait for the owned server; from here on, a failure is said once."""
        if self.server is not None:
            self.server.wait_ready()
        self._stack.enter_context(console_tracebacks(self._debug))


@contextlib.contextmanager
def flow_session(debug: bool, services: bool = False) -> Iterator[FlowSession]:
    """``services``: a server with its scheduler (``serve``), else a temporary one's."""
    with owned_server(services) as server, contextlib.ExitStack() as stack:
        yield FlowSession(server, debug, stack)
