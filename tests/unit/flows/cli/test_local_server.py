"""The Prefect server a flow command owns: it dies with the command, it is not started when
an API is configured, and a server that cannot start is one error naming what to set."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.cli import local_server

REPO = Path(__file__).resolve().parents[4]
#: A parent that starts a sleeping child the way LocalServer starts the server.
PARENT = """
import os, subprocess, sys, time
from flows.cli.local_server import _die_with_parent, _prctl
parent, prctl = os.getpid(), _prctl()
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(120)"],
    preexec_fn=lambda: _die_with_parent(prctl, parent),
)
print(child.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended, waiting for init to reap it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_dies_when_its_parent_is_killed_with_sigkill() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait(10)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


def test_no_server_is_started_when_an_api_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started: list[bool] = []
    monkeypatch.setattr(local_server.LocalServer, "__init__", lambda *a: started.append(True))
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        with local_server.owned_server(services=False) as server:
            assert server is None
    assert started == []


def test_a_server_that_cannot_start_is_one_error_saying_what_to_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A database URL the server cannot open: it exits while starting.
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "nosuchdriver://nowhere")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    server = local_server.LocalServer(services=False)
    with pytest.raises(local_server.ServerStartError) as caught:
        server.wait_ready(timeout_s=120)
    message = str(caught.value)
    assert message.startswith("the local Prefect server exited while starting (")
    assert message.endswith("set PREFECT_API_URL to use a running server")
    assert "\n" not in message
    assert server.process.poll() is not None


def test_the_startup_timeout_follows_prefects_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(local_server.STARTUP_TIMEOUT_VARIABLE, "7")
    assert local_server.startup_timeout() == 7.0
    monkeypatch.setenv(local_server.STARTUP_TIMEOUT_VARIABLE, "soon")
    assert local_server.startup_timeout() == local_server.DEFAULT_STARTUP_TIMEOUT_S
