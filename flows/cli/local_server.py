"""A Prefect server owned by one command: started when no API is configured, gone with it.

Prefect's own temporary server (started by the first flow run when ``PREFECT_API_URL`` is
unset) is a child process that outlives a command killed with SIGKILL, and it runs no
scheduler, so a ``serve`` without a configured API never fires a schedule. The flow
commands therefore start the server themselves:

- ``services=False`` (train, score, demo): the same server as Prefect's temporary one (the
  API, the services Prefect runs in a temporary server, no UI);
- ``services=True`` (serve): a full server with its scheduler, so schedules fire.

On Linux the child asks the kernel to SIGKILL it when the command's process ends
(``PR_SET_PDEATHSIG``), so not even ``kill -9`` of the command leaves it running; on every
platform a normal exit, an error or Ctrl-C stops it. Its database is Prefect's usual one
(``PREFECT_HOME``), as with the temporary server.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import IO

#: ``prctl`` option: the signal the kernel sends this process when its parent ends.
_PR_SET_PDEATHSIG = 1
HOST = "127.0.0.1"
#: Seconds to wait for the server, unless the environment says (as for Prefect's own).
STARTUP_TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT_S = 90.0
#: Seconds a server gets to stop after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0


class ServerStartError(RuntimeError):
    """The local Prefect server did not answer in time, or exited while starting."""


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up in the parent: the child must not load libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


def _die_with_parent(prctl: Callable[..., int] | None, parent_pid: int) -> None:
    """Runs in the child before it executes the server: SIGKILL when the parent ends."""
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The parent may have ended before prctl took effect: then nobody would kill us.
    if os.getppid() != parent_pid:
        os._exit(1)


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _server_command(port: int) -> list[str]:
    # What Prefect's temporary server runs, on a port of our choosing.
    return [
        sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
        "--host", HOST, "--port", str(port), "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip


def _server_environment(services: bool) -> dict[str, str]:
    env = {**os.environ, "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)  # the server is the API; it must not look for another
    if not services:
        env.update({"PREFECT__SERVER_EPHEMERAL": "1", "PREFECT_UI_ENABLED": "0"})
    return env


class LocalServer:
    """One ``uvicorn`` process serving the Prefect API on 127.0.0.1 and a free port."""

    def __init__(self, services: bool) -> None:
        self.services = services
        self.ready = False
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/api"
        self._log: IO[bytes] = tempfile.TemporaryFile(prefix="prefect-server-")
        parent, prctl = os.getpid(), _prctl()
        self.process = subprocess.Popen(
            _server_command(self.port),
            env=_server_environment(services),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _die_with_parent(prctl, parent),
        )

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Return once the API answers; raise ``ServerStartError`` (and stop it) if not."""
        limit = timeout_s if timeout_s is not None else startup_timeout()
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                last = self._last_line()
                self.stop()
                raise ServerStartError(
                    f"the local Prefect server exited while starting ({last}); "
                    "set PREFECT_API_URL to use a running server"
                )
            if _healthy(self.url):
                self.ready = True
                return
            time.sleep(0.25)
        self.stop()
        raise ServerStartError(
            f"the local Prefect server did not answer within {limit:.0f} s; set "
            f"{STARTUP_TIMEOUT_VARIABLE} to wait longer or PREFECT_API_URL to use a "
            "running server"
        )

    def _last_line(self) -> str:
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().decode(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        return lines[-1] if lines else f"exit code {self.process.returncode}"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); calling it again does nothing."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._log.close()


def startup_timeout() -> float:
    text = os.environ.get(STARTUP_TIMEOUT_VARIABLE)
    try:
        return float(text) if text else DEFAULT_STARTUP_TIMEOUT_S
    except ValueError:
        return DEFAULT_STARTUP_TIMEOUT_S


#: Straight to 127.0.0.1: an HTTP proxy from the environment would not reach it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(api_url: str) -> bool:
    try:
        with _DIRECT.open(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def configured_api_url() -> str | None:
    """The API Prefect would use (environment, profile or a test harness), or None."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


@contextlib.contextmanager
def _prefect_environment(server: LocalServer) -> Iterator[None]:
    """``PREFECT_API_URL`` for this process (its threads included) and its subprocesses.

    Prefect reads its settings when it is imported; Prefect's background threads (the log
    and event workers) read the process-wide settings, not those of a ``with`` block, and
    without an API URL would start Prefect's own temporary server, the one this replaces.
    A server without the UI gets no UI URL, so no log line links to a page that is not.
    """
    from prefect.context import refresh_global_settings_context

    values = {"PREFECT_API_URL": server.url}
    if not server.services:
        values["PREFECT_UI_URL"] = ""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    refresh_global_settings_context()
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        refresh_global_settings_context()


def _drain_prefect_workers() -> None:
    """Send the logs and events still queued while the server is up (as Prefect's test
    harness does before it stops its server)."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain() -> None:
        with contextlib.suppress(RuntimeError):  # never started
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


@contextlib.contextmanager
def owned_server(services: bool) -> Iterator[LocalServer | None]:
    """Start a local server unless an API is configured; the block runs against it.

    Enter this before importing the flows: the server starts while they load, and is
    waited for when the block first needs it (``wait_ready``).
    """
    if configured_api_url() is not None:
        yield None
        return
    server = LocalServer(services)
    try:
        with _prefect_environment(server):
            try:
                yield server
            finally:
                if server.ready:
                    _drain_prefect_workers()
    finally:
        server.stop()
