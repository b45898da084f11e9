"""The steps of prefect.yaml, run as a flow run's process runs them: ``{{ $VAR }}`` filled
in from the environment by Prefect's templating, then the function its name imports. (The
integration tests run them through a real server, deploy and worker.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.utilities.importtools import import_object
from prefect.utilities.templating import apply_values

from flows.cli import deploy_steps

REPO = Path(__file__).resolve().parents[4]


def deployment_steps(name: str, kind: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((REPO / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = [d for d in data["deployments"] if d["name"] == name]
    return deployment[kind]


def run(steps: list[dict[str, Any]]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for step in steps:
        ((name, inputs),) = step.items()
        outputs.update(import_object(name)(**apply_values(inputs, os.environ)))
    return outputs


@pytest.fixture
def cwd_back():
    before = os.getcwd()
    yield
    os.chdir(before)


def test_the_workdir_comes_from_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cwd_back: None
) -> None:
    monkeypatch.setenv("VAE_ANOMALY_WORKDIR", str(tmp_path))
    (workdir, _) = deployment_steps("score", "pull")
    assert run([workdir])["directory"] == str(tmp_path)
    assert Path.cwd() == tmp_path


def test_without_the_variable_the_workdir_is_the_images(
    monkeypatch: pytest.MonkeyPatch, cwd_back: None
) -> None:
    monkeypatch.delenv("VAE_ANOMALY_WORKDIR", raising=False)
    (workdir, _) = deployment_steps("score", "pull")
    if Path("/app").is_dir():  # inside the image
        assert run([workdir])["directory"] == "/app"
        return
    with pytest.raises(deploy_steps.DeploymentSetupError) as caught:
        run([workdir])
    message = str(caught.value)
    assert message.startswith("working directory /app does not exist"), message
    assert "VAE_ANOMALY_WORKDIR" in message and "\n" not in message


def test_a_run_without_the_tracking_uri_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.setenv("VAE_ANOMALY_SCORE_INPUT", "in/")
    monkeypatch.delenv("VAE_ANOMALY_OUTPUT_DIR", raising=False)
    (_, check) = deployment_steps("score", "pull")
    with pytest.raises(deploy_steps.DeploymentSetupError) as caught:
        run([check])
    message = str(caught.value)
    assert message.startswith(
        "MLFLOW_TRACKING_URI, VAE_ANOMALY_OUTPUT_DIR must be set for deployment vae-score/score"
    ), message
    assert "VAE_ANOMALY_SCORE_INPUT" not in message and "\n" not in message


def test_a_deploy_without_the_training_data_stops_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("VAE_ANOMALY_TRAIN_DATA", "  ")
    (check,) = deployment_steps("retrain", "build")
    with pytest.raises(SystemExit) as caught:
        run([check])
    assert str(caught.value.code).startswith(
        "error: VAE_ANOMALY_TRAIN_DATA must be set for deployment vae-train/retrain"
    )


def test_everything_set_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "VAE_ANOMALY_TRAIN_DATA"):
        monkeypatch.setenv(name, "x")
    assert run(deployment_steps("retrain", "build")) == {}
    assert deploy_steps.missing_variables(["A", "B"], {"A": "1", "B": ""}) == ["B"]
