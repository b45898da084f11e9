"""``vae-anomaly serve`` as an operator runs it, in its own process.

- On a shared server (``prefect server start``, its scheduler on): schedules of a few
  seconds fire, the runs complete, and the server's other deployments, named as those of
  prefect.yaml, are the same after Ctrl-C as before; only serve's own are paused.
- Without ``PREFECT_API_URL``: serve starts its own server, with a scheduler, whose run
  publishes its report; ``kill -9`` of serve leaves no server behind.

A champion is trained first by ``vae-anomaly train`` against the shared server.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect_processes import (
    BIN,
    base_env,
    children,
    client,
    command_line,
    prefect_server,
    process_alive,
    run,
    start,
    stop,
    wait_for,
)

from flows.cli.flow_commands import SERVE_DEPLOYMENTS
from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic

pytestmark = pytest.mark.slow
#: Quick loops, so that a schedule of seconds fires within seconds.
FAST_LOOPS = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
}
EVERY_S = 4
RUNS_TIMEOUT_S = 400
#: Seconds serve may take to stop after Ctrl-C.
STOP_TIMEOUT_S = 180
OTHERS = ("vae-train/retrain", "vae-score/score")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("serve")
    paths = {name: root / name for name in ("home", "own-home", "data", "logs", "elsewhere")}
    for path in paths.values():
        path.mkdir()
    train, score, _ = make_demo_frames(seed=7, n_train=500, n_score=150)
    write_parquet_atomic(train, paths["data"] / "train.parquet")
    write_parquet_atomic(score, paths["data"] / "score.parquet")
    return paths


def write_config(folders: dict[str, Path], store: str, output: str) -> Path:
    config = {
        "tracking": {"tracking_uri": store},
        "train": {
            "data_path": str(folders["data"] / "train.parquet"),
            "key_columns": ["payment_id"],
            "timestamp_column": "created_at",
            "detector": {"max_epochs": 4, "hidden_sizes": [16], "latent_dim": 2},
        },
        "score": {
            "input_path": str(folders["data"] / "score.parquet"),
            "output_dir": str(folders["data"].parent / output),
        },
    }
    path = folders["data"].parent / f"{output}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def api_url(folders: dict[str, Path]) -> Iterator[str]:
    with prefect_server(folders["home"], folders["logs"] / "server.log", **FAST_LOOPS) as url:
        yield url


@pytest.fixture(scope="module")
def store(
    folders: dict[str, Path], api_url: str, mlflow_store_factory: Callable[[Path], str]
) -> str:
    """An MLflow store with a champion, trained by the command line on the shared server."""
    uri = mlflow_store_factory(folders["data"].parent / "mlflow")
    config = write_config(folders, uri, "train-out")
    env = base_env(folders["home"], PREFECT_API_URL=api_url)
    done = run(
        [str(BIN / "vae-anomaly"), "train", "--config", str(config)], env, folders["elsewhere"]
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "as champion" in done.stdout, done.stdout
    return uri


def create_others(api_url: str) -> dict[str, Any]:
    """Deployments named as prefect.yaml's, as another team's deploy leaves them."""
    from prefect.client.schemas.actions import DeploymentScheduleCreate, WorkPoolCreate
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.workers.process import ProcessWorker

    with client(api_url) as api:
        api.create_work_pool(
            WorkPoolCreate(
                name="cpu-pool",
                type="process",
                base_job_template=ProcessWorker.get_default_base_job_template(),
            )
        )
        for name in OTHERS:
            flow_name, deployment = name.split("/")
            api.create_deployment(
                flow_id=api.create_flow_from_name(flow_name),
                name=deployment,
                entrypoint=f"flows/{flow_name.removeprefix('vae-')}_flow.py:x",
                work_pool_name="cpu-pool",
                schedules=[DeploymentScheduleCreate(schedule=CronSchedule(cron="0 5 * * *"))],
                pull_steps=[
                    {"prefect.deployments.steps.set_working_directory": {"directory": "/app"}}
                ],
                job_variables={"env": {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}},
                parameters={"overrides": {"score": {"batch_size": 1000}}},
            )
        return {name: snapshot(api.read_deployment_by_name(name)) for name in OTHERS}


def snapshot(deployment: Any) -> dict[str, Any]:
    """What a deploy sets and a serve must not change."""
    return {
        "paused": deployment.paused,
        "schedules": [(str(s.schedule), s.active) for s in deployment.schedules],
        "pull_steps": deployment.pull_steps,
        "job_variables": deployment.job_variables,
        "parameters": deployment.parameters,
        "work_pool_name": deployment.work_pool_name,
        "entrypoint": deployment.entrypoint,
    }


def completed_runs(api_url: str, deployment_name: str) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with client(api_url) as api:
        return api.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
            ),
        )


def serve_command(config: Path) -> list[str]:
    return [
        str(BIN / "vae-anomaly"), "serve", "--config", str(config),
        "--score-every", str(EVERY_S), "--limit", "1",
    ]  # fmt: skip


def published_runs(root: Path) -> list[Path]:
    runs = root / "runs"
    return (
        sorted(p for p in runs.iterdir() if (p / "manifest.json").is_file())
        if runs.is_dir()
        else []
    )


# -- a shared server ---------------------------------------------------------------------
def test_serve_on_a_shared_server_fires_and_leaves_the_others_alone(
    folders: dict[str, Path], api_url: str, store: str
) -> None:
    before = create_others(api_url)
    config = write_config(folders, store, "shared-out")
    env = base_env(folders["home"], PREFECT_API_URL=api_url, **FAST_LOOPS)
    log = folders["logs"] / "serve-shared.log"
    process = start(serve_command(config), env, log, folders["elsewhere"])
    try:
        wait_for(
            lambda: (
                len(completed_runs(api_url, SERVE_DEPLOYMENTS["score"])) >= 2
                or process.poll() is not None
            ),
            RUNS_TIMEOUT_S,
            "two completed runs of serve-score",
            step=2,
        )
        assert process.poll() is None, log.read_text(errors="replace")[-4000:]
        process.send_signal(signal.SIGINT)  # Ctrl-C
        # serve cancels a run in progress and reports it to the server before it exits:
        # slower while the rest of the suite runs beside it.
        assert process.wait(STOP_TIMEOUT_S) == 0, log.read_text(errors="replace")[-4000:]
    finally:
        stop(process)
    output = log.read_text(errors="replace")
    assert "Traceback" not in output, output[-4000:]
    with client(api_url) as api:
        after = {name: snapshot(api.read_deployment_by_name(name)) for name in OTHERS}
        own = [
            api.read_deployment_by_name(f"{flow}/{SERVE_DEPLOYMENTS[job]}")
            for flow, job in (("vae-train", "train"), ("vae-score", "score"))
        ]
    assert after == before
    assert [deployment.paused for deployment in own] == [True, True]
    assert len(published_runs(folders["data"].parent / "shared-out")) >= 2


# -- no configured server ----------------------------------------------------------------
def test_serve_without_an_api_owns_a_server_whose_schedules_fire(
    folders: dict[str, Path], store: str
) -> None:
    config = write_config(folders, store, "own-out")
    env = base_env(folders["own-home"], **FAST_LOOPS)
    log = folders["logs"] / "serve-own.log"
    process = start(serve_command(config), env, log, folders["elsewhere"])
    try:
        root = folders["data"].parent / "own-out"
        # One run is enough here: the shared-server test counts the firings.
        wait_for(
            lambda: published_runs(root) or process.poll() is not None,
            RUNS_TIMEOUT_S,
            "a published scoring run",
            step=2,
        )
        assert process.poll() is None, log.read_text(errors="replace")[-4000:]
        output = log.read_text(errors="replace")
        url = re.search(r"local Prefect server at (http://127\.0\.0\.1:\d+/api)", output)
        assert url, output[-4000:]
        servers = [pid for pid in children(process.pid) if "uvicorn" in command_line(pid)]
        assert len(servers) == 1, [command_line(pid) for pid in children(process.pid)]
        latest = json.loads((root / "latest.json").read_text(encoding="utf-8"))
        assert (root / latest["path"] / "report.html").is_file()

        process.send_signal(signal.SIGKILL)  # kill -9: no chance to clean up
        process.wait(30)
        wait_for(lambda: not process_alive(servers[0]), 20, "the server to end with serve")
    finally:
        stop(process)
