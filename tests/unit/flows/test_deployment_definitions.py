"""prefect.yaml and the flow commands: every deployment points at a real flow on a valid
schedule and pool. No Prefect server: entrypoints are loaded the way a worker loads them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import Flow, load_flow_from_entrypoint

from flows import cli

REPO = Path(__file__).resolve().parents[3]
PREFECT_YAML = REPO / "prefect.yaml"


def load_prefect_yaml() -> dict[str, Any]:
    data = yaml.safe_load(PREFECT_YAML.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "prefect.yaml must hold a mapping"
    return data


DEPLOYMENTS = load_prefect_yaml().get("deployments") or []


def by_name(name: str) -> dict[str, Any]:
    matches = [d for d in DEPLOYMENTS if d.get("name") == name]
    assert len(matches) == 1, f"expected one deployment named {name!r}"
    return matches[0]


def test_prefect_yaml_declares_retrain_and_score():
    data = load_prefect_yaml()
    assert data.get("name")
    names = [d.get("name") for d in DEPLOYMENTS]
    assert len(names) == len(set(names)), names
    assert {"retrain", "score"} <= set(names)


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: str(d.get("name")))
def deployment(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.param


def test_entrypoint_is_a_prefect_flow(deployment: dict[str, Any]):
    path, _, function = deployment["entrypoint"].partition(":")
    assert function, deployment["entrypoint"]
    assert (REPO / path).is_file(), path
    loaded = load_flow_from_entrypoint(f"{REPO / path}:{function}", use_placeholder_flow=False)
    assert isinstance(loaded, Flow)
    assert callable(loaded.fn)


def test_deployment_parameters_fit_the_flow(deployment: dict[str, Any]):
    """Parameters given are flow parameters; those not given have defaults."""
    path, _, function = deployment["entrypoint"].partition(":")
    loaded = load_flow_from_entrypoint(f"{REPO / path}:{function}", use_placeholder_flow=False)
    signature = inspect.signature(loaded.fn)
    given = deployment.get("parameters") or {}
    assert set(given) <= set(signature.parameters), given
    for name, parameter in signature.parameters.items():
        assert name in given or parameter.default is not inspect.Parameter.empty, name


def test_schedules_are_valid_crons(deployment: dict[str, Any]):
    schedules = deployment.get("schedules") or []
    assert schedules, f"deployment {deployment['name']} has no schedule"
    for schedule in schedules:
        cron = schedule["cron"]
        assert len(cron.split()) == 5, cron
        CronSchedule(cron=cron, timezone=schedule.get("timezone"))  # raises when invalid


def test_work_pool_is_named(deployment: dict[str, Any]):
    pool = deployment.get("work_pool") or {}
    assert isinstance(pool.get("name"), str) and pool["name"].strip()


def test_retrain_runs_weekly_on_the_gpu_pool():
    retrain = by_name("retrain")
    assert retrain["entrypoint"] == "flows/train_flow.py:train_flow"
    assert retrain["work_pool"]["name"] == "gpu-pool"
    (schedule,) = retrain["schedules"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert day == "*" and month == "*" and weekday != "*"


def test_score_runs_daily_on_the_cpu_pool():
    score = by_name("score")
    assert score["entrypoint"] == "flows/score_flow.py:score_flow"
    assert score["work_pool"]["name"] == "cpu-pool"
    (schedule,) = score["schedules"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert (day, month, weekday) == ("*", "*", "*")
    assert minute.isdigit() and hour.isdigit()


def test_serve_defaults_match_prefect_yaml():
    """`vae-anomaly serve` and the deployments run on the same schedules by default."""
    parser = cli.build_parser()
    args = parser.parse_args(["serve"])
    assert args.retrain_cron == by_name("retrain")["schedules"][0]["cron"]
    assert args.score_cron == by_name("score")["schedules"][0]["cron"]


@pytest.mark.parametrize("command", ["serve", "train", "score", "demo", "config-schema"])
def test_flow_commands_answer_help(command: str, capsys: pytest.CaptureFixture[str]):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: vae-anomaly {command}")
