"""The repository's prefect.yaml deployed from this checkout onto a real server, run by real
process workers: both deployments complete (a champion registered, a report published);
an unset tracking URI stops the deploy, and a run at its start, with one line naming it.

One server for the module (``prefect server start`` on 127.0.0.1, its own PREFECT_HOME),
two process work pools and a worker for each, started from a folder that is not the
checkout: the runs find flows/ and configs/ only through the pull step's directory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect_processes import (
    BIN,
    REPO,
    base_env,
    client,
    flow_run_logs,
    prefect_server,
    run,
    start,
    stop,
    wait_for,
)

from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic

pytestmark = pytest.mark.slow
POOLS = ("cpu-pool", "gpu-pool")
#: Flow runs start a Python process that loads torch, MLflow and Prefect: minutes on a
#: busy 2-core machine.
RUN_TIMEOUT_S = 420
FAST = {"train": {"detector": {"max_epochs": 4, "hidden_sizes": [16], "latent_dim": 2}}}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deployments")
    paths = {name: root / name for name in ("home", "data", "out", "logs", "elsewhere")}
    for path in paths.values():
        path.mkdir()
    train, score, _ = make_demo_frames(seed=5, n_train=600, n_score=200)
    write_parquet_atomic(train, paths["data"] / "train.parquet")
    write_parquet_atomic(score, paths["data"] / "score.parquet")
    return paths


@pytest.fixture(scope="module")
def api_url(folders: dict[str, Path]) -> Iterator[str]:
    with prefect_server(folders["home"], folders["logs"] / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def job_env(
    folders: dict[str, Path], api_url: str, mlflow_store_factory: Callable[[Path], str]
) -> dict[str, str]:
    """What the deploy sees: the values the runs need, the checkout as working directory."""
    return base_env(
        folders["home"],
        PREFECT_API_URL=api_url,
        MLFLOW_TRACKING_URI=mlflow_store_factory(folders["out"] / "mlflow"),
        VAE_ANOMALY_TRAIN_DATA=str(folders["data"] / "train.parquet"),
        VAE_ANOMALY_SCORE_INPUT=str(folders["data"] / "score.parquet"),
        VAE_ANOMALY_OUTPUT_DIR=str(folders["out"] / "scores"),
        VAE_ANOMALY_WORKDIR=str(REPO),
    )


def create_pools(api_url: str) -> None:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with client(api_url) as api:
        for pool in POOLS:
            api.create_work_pool(
                WorkPoolCreate(name=pool, type="process", base_job_template=template)
            )


@pytest.fixture(scope="module")
def deployed(api_url: str, job_env: dict[str, str]) -> dict[str, Any]:
    """``prefect deploy --all`` of the repository's prefect.yaml, from the checkout."""
    create_pools(api_url)
    done = run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], job_env, REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    with client(api_url) as api:
        return {
            name: api.read_deployment_by_name(name)
            for name in ("vae-train/retrain", "vae-score/score")
        }


@pytest.fixture(scope="module")
def workers(folders: dict[str, Path], api_url: str, deployed: dict[str, Any]) -> Iterator[None]:
    """A process worker per pool, in a folder that is not the checkout, with no job
    variable of its own: what a run needs comes from its deployment."""
    env = base_env(folders["home"], PREFECT_API_URL=api_url, PREFECT_WORKER_QUERY_SECONDS="1")
    processes = [
        start(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
            env,
            folders["logs"] / f"worker-{pool}.log",
            folders["elsewhere"],
        )  # fmt: skip
        for pool in POOLS
    ]
    yield
    for process in processes:
        stop(process)


def run_deployment(api_url: str, deployment: Any, parameters: dict[str, Any]) -> Any:
    """Start a run of ``deployment`` and wait until it is final; return the flow run."""
    with client(api_url) as api:
        flow_run = api.create_flow_run_from_deployment(deployment.id, parameters=parameters)

    def final() -> Any:
        with client(api_url) as api:
            current = api.read_flow_run(flow_run.id)
        return current if current.state and current.state.is_final() else None

    return wait_for(final, RUN_TIMEOUT_S, f"the run of {deployment.name}", step=2)


def describe(api_url: str, flow_run: Any, folders: dict[str, Path]) -> str:
    logs = "\n".join(flow_run_logs(api_url, flow_run.id))
    workers = "".join(
        (folders["logs"] / f"worker-{pool}.log").read_text(errors="replace")[-3000:]
        for pool in POOLS
    )
    return f"{flow_run.state}\n--- run logs\n{logs}\n--- workers\n{workers}"


# -- the deploy --------------------------------------------------------------------------
def test_the_deployments_carry_the_checkout_and_the_values_their_runs_need(
    deployed: dict[str, Any], job_env: dict[str, str]
) -> None:
    for name, needs in (
        ("vae-train/retrain", ("MLFLOW_TRACKING_URI", "VAE_ANOMALY_TRAIN_DATA")),
        ("vae-score/score", ("MLFLOW_TRACKING_URI", "VAE_ANOMALY_SCORE_INPUT")),
    ):
        deployment = deployed[name]
        env = deployment.job_variables["env"]
        assert {key: env[key] for key in needs} == {key: job_env[key] for key in needs}, name
        (workdir, check) = deployment.pull_steps
        assert workdir["flows.cli.deploy_steps.set_working_directory"]["directory"] == str(REPO)
        assert "flows.cli.deploy_steps.require_at_run" in check
        assert deployment.paused is False and deployment.schedules


# -- the runs ----------------------------------------------------------------------------
@pytest.mark.usefixtures("workers")
def test_both_deployments_run_and_complete(
    api_url: str, deployed: dict[str, Any], folders: dict[str, Path], job_env: dict[str, str]
) -> None:
    from mlflow import MlflowClient

    trained = run_deployment(api_url, deployed["vae-train/retrain"], {"overrides": FAST})
    assert trained.state.is_completed(), describe(api_url, trained, folders)
    # Both URIs given: an earlier test's in-process flow leaves MLFLOW_REGISTRY_URI in
    # this process's environment, which a client without a registry URI would read.
    store = job_env["MLFLOW_TRACKING_URI"]
    registry = MlflowClient(tracking_uri=store, registry_uri=store)
    champion = registry.get_model_version_by_alias("vae-anomaly", "champion")
    assert str(champion.version) == "1"

    scored = run_deployment(api_url, deployed["vae-score/score"], {})
    assert scored.state.is_completed(), describe(api_url, scored, folders)
    root = folders["out"] / "scores"
    latest = json.loads((root / "latest.json").read_text(encoding="utf-8"))
    report = root / latest["path"] / "report.html"
    assert report.is_file() and "vae-anomaly" in report.read_text(encoding="utf-8")
    # Nothing was written where the workers run: no stray sqlite store or output.
    assert sorted(p.name for p in folders["elsewhere"].iterdir()) == []


# -- without the tracking URI ------------------------------------------------------------
def test_a_deploy_without_the_tracking_uri_stops_with_one_line(
    deployed: dict[str, Any], job_env: dict[str, str], api_url: str
) -> None:
    env = {k: v for k, v in job_env.items() if k != "MLFLOW_TRACKING_URI"}
    done = run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env, REPO)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: MLFLOW_TRACKING_URI must be set for deployment vae-train/retrain (unset or "
        "empty in the environment of prefect deploy); export it and try again"
    ], output
    assert "Traceback" not in output, output
    with client(api_url) as api:  # the deployment as it was
        after = api.read_deployment_by_name("vae-train/retrain")
    assert after.job_variables == deployed["vae-train/retrain"].job_variables


@pytest.mark.usefixtures("workers")
def test_a_run_without_the_tracking_uri_fails_at_its_start_naming_it(
    api_url: str, deployed: dict[str, Any], folders: dict[str, Path]
) -> None:
    from prefect.client.schemas.actions import DeploymentUpdate

    deployment = deployed["vae-score/score"]
    env = {k: v for k, v in deployment.job_variables["env"].items() if k != "MLFLOW_TRACKING_URI"}
    with client(api_url) as api:  # as if edited in the UI
        api.update_deployment(
            deployment.id, DeploymentUpdate(job_variables={**deployment.job_variables, "env": env})
        )
    flow_run = run_deployment(api_url, deployment, {})
    assert not flow_run.state.is_completed()
    expected = (
        "MLFLOW_TRACKING_URI must be set for deployment vae-score/score (unset or empty in "
        "the environment of this flow run)"
    )
    logs = flow_run_logs(api_url, flow_run.id)
    assert any(expected in line for line in logs), describe(api_url, flow_run, folders)
    # Failed before the flow started: no task ran, and no store appeared anywhere.
    assert not any("Beginning flow run" in line for line in logs), logs
    assert sorted(p.name for p in folders["elsewhere"].iterdir()) == []
