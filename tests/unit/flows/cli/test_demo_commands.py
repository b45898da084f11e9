"""The demo leads on: the commands it prints at the end work as printed, from another
folder, in fresh processes (a scoring run with the champion; the MLflow UI on the store)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from flows.demo import executable

REPO = Path(__file__).resolve().parents[4]
BIN = Path(sys.executable).parent
JOB_VARIABLES = ("MLFLOW_TRACKING_URI", "VAE_ANOMALY_TRACKING_URI", "PREFECT_API_URL")


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in JOB_VARIABLES}
    # As after `make demo`: the environment's bin/ is not on PATH.
    path = [p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != BIN]
    return {**env, "PATH": os.pathsep.join(path), "PREFECT_HOME": str(home)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def json_from(url: str) -> dict:
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_the_commands_the_demo_prints_work_as_printed(tmp_path: Path) -> None:
    env = environment(tmp_path / "home")
    demo = subprocess.run(
        [str(BIN / "vae-anomaly"), "demo", "--workdir", "demo_output"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    lines = demo.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("next: "))
    score, ui = (shlex.split(line) for line in lines[start + 1 : start + 3])
    assert Path(score[0]).name == "vae-anomaly" and score[1] == "score", score
    assert Path(ui[0]).name == "mlflow" and ui[1] == "ui", ui

    elsewhere = tmp_path / "elsewhere"  # no configs/, no demo_output/ here
    elsewhere.mkdir()
    scored = subprocess.run(
        score, capture_output=True, text=True, cwd=elsewhere, env=env, timeout=600
    )
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
    report = next(line for line in scored.stdout.splitlines() if line.startswith("report: "))
    assert Path(report.removeprefix("report: ")).is_file()

    # The UI command as printed, on a free port instead of 5000 (the machine is shared),
    # without the background job workers it starts by default (eight processes).
    port = free_port()
    server = subprocess.Popen(
        [*ui, "--port", str(port)], cwd=elsewhere,
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{port}/api/2.0/mlflow"
        deadline, models = time.monotonic() + 240, None
        while models is None and time.monotonic() < deadline:
            try:
                models = json_from(f"{api}/registered-models/search")
            except OSError:
                assert server.poll() is None, "mlflow ui exited"
                time.sleep(1)
        assert models is not None, "mlflow ui did not answer"
        (model,) = models["registered_models"]
        assert model["name"] == "vae-anomaly"
        assert {"alias": "champion", "version": "1"} in model["aliases"]
    finally:
        stop_group(server)


def stop_group(process: subprocess.Popen) -> None:
    """Stop ``process`` and its children: the MLflow server runs workers of its own."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                os.killpg(process.pid, 0)  # raises ProcessLookupError once all are gone
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_an_executable_of_another_environment_is_named_by_its_path(tmp_path: Path) -> None:
    name = executable("vae-anomaly")
    assert Path(name).name == "vae-anomaly"
    assert name == "vae-anomaly" or Path(name).resolve() == (BIN / "vae-anomaly").resolve()
    assert executable("no-such-program") == "no-such-program"
