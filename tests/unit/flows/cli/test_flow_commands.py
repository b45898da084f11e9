"""The flow commands in their own processes: bad paths fail before Prefect and MLflow load,
a failure inside a flow is said once, and the Prefect server a command starts never
outlives it, ``kill -9`` included. Real processes, a real server, real Parquet files."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from flows.cli.flow_commands import score_summary
from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic

REPO = Path(__file__).resolve().parents[4]
#: Runs the command line, then reports whether Prefect or MLflow were loaded.
WRAPPER = """
import sys
from flows.cli import main
code = main(sys.argv[1:])
print("LOADED", *(m for m in ("prefect", "mlflow") if m in sys.modules))
sys.exit(code)
"""
JOB_VARIABLES = ("MLFLOW_TRACKING_URI", "VAE_ANOMALY_TRACKING_URI", "PREFECT_API_URL")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flow-commands")
    train, score, _ = make_demo_frames(seed=2, n_train=200, n_score=50)
    write_parquet_atomic(train, root / "train.parquet")
    write_parquet_atomic(score, root / "score.parquet")
    return root


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in JOB_VARIABLES}
    return {**env, "PREFECT_HOME": str(home), "PYTHONPATH": str(REPO)}


def config(tmp_path: Path, data: Path, **score: str) -> Path:
    values = {
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}"},
        "train": {"data_path": str(data / "train.parquet"), "key_columns": ["payment_id"]},
        "score": {
            "input_path": str(data / "score.parquet"),
            "output_dir": str(tmp_path / "out"),
            **score,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def run_cli(tmp_path: Path, *argv: str) -> tuple[int, str, list[str]]:
    """Exit code, stderr, and which of Prefect and MLflow ``vae-anomaly argv`` loaded."""
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv],
        capture_output=True, text=True, cwd=tmp_path, env=environment(tmp_path / "home"),
        timeout=300,
    )  # fmt: skip
    last = done.stdout.splitlines()[-1] if done.stdout else ""
    assert last.startswith("LOADED"), done.stdout + done.stderr
    return done.returncode, done.stderr, last.split()[1:]


def processes_with_home(home: Path) -> list[int]:
    """Processes (of this user) whose PREFECT_HOME is ``home``: the command's server."""
    wanted = f"PREFECT_HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if wanted in environ and state != "Z":
            found.append(int(entry.name))
    return found


def assert_one_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr and "| ERROR" not in stderr, stderr
    assert "Finished in state Failed" not in stderr, stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


# -- before Prefect and MLflow -----------------------------------------------------------
def test_a_missing_input_fails_before_prefect_and_mlflow_load(tmp_path: Path, data: Path) -> None:
    missing = tmp_path / "nowhere" / "today.parquet"
    started = time.monotonic()
    code, err, loaded = run_cli(
        tmp_path, "score", "--config", str(config(tmp_path, data)), "--input", str(missing)
    )
    assert code == 2
    assert_one_error(err, str(missing), "no such file or directory")
    assert loaded == [], loaded
    assert not (tmp_path / "out").exists()
    assert time.monotonic() - started < 120  # no server, no flow run: seconds


def test_missing_training_data_fails_before_prefect_loads(tmp_path: Path, data: Path) -> None:
    code, err, loaded = run_cli(
        tmp_path, "train", "--config", str(config(tmp_path, data)), "--data", str(tmp_path / "*.pq")
    )
    assert code == 2
    assert_one_error(err, "matches no files")
    assert loaded == []


@pytest.mark.parametrize("kind", ["file", "device", "read-only"])
def test_an_unusable_output_folder_fails_before_prefect_loads(
    tmp_path: Path, data: Path, kind: str
) -> None:
    if kind == "file":
        output = tmp_path / "report.txt"
        output.write_text("not a folder")
        expected = "is a file"
    elif kind == "device":
        output, expected = Path(os.devnull), "is a character device"
    else:
        if os.geteuid() == 0:
            pytest.skip("root may write into a read-only folder")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        output, expected = locked / "scores", "permission denied"
    code, err, loaded = run_cli(
        tmp_path, "score", "--config", str(config(tmp_path, data)), "--output-dir", str(output)
    )
    assert code == 2
    assert_one_error(err, str(output), expected)
    assert loaded == []


def test_an_output_inside_the_input_fails_before_prefect_loads(tmp_path: Path, data: Path) -> None:
    code, err, loaded = run_cli(
        tmp_path, "score", "--config", str(config(tmp_path, data)),
        "--input", str(data), "--output-dir", str(data / "scores"),
    )  # fmt: skip
    assert code == 2
    assert_one_error(err, str(data))
    assert loaded == []


def test_an_existing_dask_cluster_without_a_prefect_api_fails_before_mlflow_loads(
    tmp_path: Path, data: Path
) -> None:
    """Its workers could not reach the server the command would start on 127.0.0.1."""
    code, err, loaded = run_cli(
        tmp_path, "score", "--config", str(config(tmp_path, data)),
        "--dask-address", "tcp://scheduler.internal:8786",
    )  # fmt: skip
    assert code == 2
    assert_one_error(err, "score.dask_address='tcp://scheduler.internal:8786'", "PREFECT_API_URL")
    assert "mlflow" not in loaded
    assert processes_with_home(tmp_path / "home") == []


# -- inside the flow ---------------------------------------------------------------------
def test_a_failure_inside_the_flow_is_said_once_and_the_server_stops(
    tmp_path: Path, data: Path
) -> None:
    """No model in the store: the scoring flow fails in its first task. Prefect would log
    that four times; the terminal shows the command's error line only."""
    code, err, loaded = run_cli(tmp_path, "score", "--config", str(config(tmp_path, data)))
    assert code == 2
    assert_one_error(err, "models:/vae-anomaly@champion", "does not exist")
    assert "prefect" in loaded  # the check above is about a flow that ran
    assert processes_with_home(tmp_path / "home") == []


def test_kill_9_of_the_command_leaves_no_prefect_server(tmp_path: Path, data: Path) -> None:
    home = tmp_path / "home"
    command = [sys.executable, "-m", "flows.cli", "score", "--config", str(config(tmp_path, data))]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=environment(home),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        servers: list[int] = []
        while not servers and time.monotonic() < deadline and process.poll() is None:
            servers = [pid for pid in processes_with_home(home) if pid != process.pid]
            time.sleep(0.2)
        assert servers, "the command started no server"
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        deadline = time.monotonic() + 20
        while processes_with_home(home) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processes_with_home(home) == []
    finally:
        if process.poll() is None:
            process.kill()


# -- the summary -------------------------------------------------------------------------
def test_the_score_summary_says_rows_flags_and_where_to_look() -> None:
    outcome = SimpleNamespace(
        rows_in=1200, rows_scored=1190, rows_quarantined=10, n_flagged=17,
        report_path=Path("out/runs/r1/report.html"), scores_path=Path("out/runs/r1/scores.parquet"),
        quarantine_path=Path("out/runs/r1/quarantine.parquet"),
    )  # fmt: skip
    assert score_summary(outcome).splitlines() == [
        "1,200 rows in: 1,190 scored, 10 quarantined, 17 flagged",
        "report: out/runs/r1/report.html",
        "scores: out/runs/r1/scores.parquet",
        "quarantine: out/runs/r1/quarantine.parquet",
    ]
