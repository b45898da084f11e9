"""Task runner selection, thread sharing, and the model reference workers load from."""

from __future__ import annotations

import os

import pytest
import torch
from prefect.task_runners import ThreadPoolTaskRunner

from flows.mlops.tracking import ResolvedModel
from flows.task_runners import (
    TaskRunnerError,
    make_task_runner,
    model_ref,
    threads_per_task,
)


def test_local_runner_is_a_thread_pool_of_the_configured_size() -> None:
    runner = make_task_runner("local", 3, None)
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 3


def test_a_bad_dask_address_names_the_expected_form() -> None:
    pytest.importorskip("prefect_dask")
    with pytest.raises(TaskRunnerError, match="tcp://host:8786"):
        make_task_runner("dask", 2, "scheduler:8786")


def test_threads_are_shared_between_concurrent_tasks_and_restored() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        with threads_per_task(concurrency=10_000):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == max(1, os.cpu_count() or 1)
    finally:
        torch.set_num_threads(before)


def test_model_ref_pins_the_version_and_makes_sqlite_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resolved = ResolvedModel(uri="models:/m/3", name="m", version="3", run_id="r", alias="champion")
    ref = model_ref(resolved, "sqlite:///mlflow.db", None)
    assert ref.uri == "models:/m/3" and ref.version == "3"
    assert ref.tracking_uri == ref.registry_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert model_ref(resolved, "http://mlflow:5000", None).tracking_uri == "http://mlflow:5000"
