"""Real Prefect processes for the deployment and serve tests: a server (``prefect server
start`` on 127.0.0.1, a free port, its own PREFECT_HOME), workers, the command line, and a
client for the server's API. Everything runs as a separate process, as an operator runs it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: Variables of the job side: a test's process gets only those it sets itself.
JOB_VARIABLES = (
    "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "VAE_ANOMALY_TRACKING_URI",
    "VAE_ANOMALY_TRAIN_DATA", "VAE_ANOMALY_SCORE_INPUT", "VAE_ANOMALY_OUTPUT_DIR",
    "VAE_ANOMALY_WORKDIR", "VAE_ANOMALY_CONFIG_DIR", "PREFECT_API_URL", "PREFECT_PROFILE",
)  # fmt: skip
STARTUP_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(home: Path, **values: str) -> dict[str, str]:
    """This environment without the job's variables, with ``home`` as PREFECT_HOME."""
    env = {k: v for k, v in os.environ.items() if k not in JOB_VARIABLES}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=str(STARTUP_TIMEOUT_S),
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        # Tiny models: one thread each keeps the 2-core test machines responsive.
        OMP_NUM_THREADS="1",
    )
    env.update(values)
    return env


def healthy(api_url: str) -> bool:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, step: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def stop(process: subprocess.Popen[Any], timeout_s: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def prefect_server(home: Path, log: Path, **env: str) -> Iterator[str]:
    """``prefect server start`` with its scheduler; yields the API URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--no-ui"], env=base_env(home, **env), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for(
            lambda: healthy(url) or process.poll() is not None, STARTUP_TIMEOUT_S, "the server"
        )
        assert process.poll() is None, log.read_text(errors="replace")[-2000:]
        yield url
    finally:
        stop(process)


def start(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[Any]:
    """A long-running process (a worker, ``serve``), its output into ``log``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float = 300):
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )


@contextlib.contextmanager
def client(api_url: str) -> Iterator[Any]:
    """Prefect's synchronous client, pointed at ``api_url``."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as api:
        yield api


def flow_run_logs(api_url: str, flow_run_id: Any) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with client(api_url) as api:
        logs = api.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text(encoding="ascii")
        found += [int(p) for p in text.split()]
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""
