"""Training on a uniform sample (max_train_rows) through the flow and the CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from prefect import flow

from flows import cli
from flows.config import load_settings
from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic
from flows.train_flow import train_flow
from vae_core import VAEAnomalyDetector


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("history")
    train, _, _ = make_demo_frames(seed=9, n_train=900, n_score=10)
    for number in range(3):  # a history spread over several files
        write_parquet_atomic(
            train.iloc[number * 300 : (number + 1) * 300], root / f"day-{number}.parquet"
        )
    return root


@pytest.mark.usefixtures("prefect_server")
def test_train_flow_samples_and_records_the_sample(
    history: Path, tmp_path: Path, mlflow_store_factory
) -> None:
    store = mlflow_store_factory(tmp_path)
    settings = load_settings(
        files=[],
        environ={},
        overrides={
            "tracking": {"tracking_uri": store, "registered_model": "sampled"},
            "train": {
                "data_path": str(history),
                "key_columns": ["payment_id"],
                "timestamp_column": "created_at",
                "max_train_rows": 400,
                "detector": {"max_epochs": 3, "random_state": 0},
            },
        },
    )
    outcome = train_flow(settings)
    tags = MlflowClient(store).get_run(outcome.run_id).data.tags
    assert (tags["row_count"], tags["rows_seen"], tags["sampled"]) == ("400", "900", "true")


@pytest.mark.usefixtures("prefect_server")
def test_sampling_as_dask_tasks_gives_the_same_sample(history: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from flows.pipeline.sampling import sample_rows
    from flows.training_data import sample_training_rows

    base = {"data_path": str(history), "max_train_rows": 333, "detector": {"random_state": 5}}
    expected, _ = sample_rows(history, 333, seed=5)

    @flow
    def sample_with(runner: str) -> tuple:
        cfg = load_settings(
            files=[],
            environ={},
            overrides={"train": {**base, "task_runner": runner, "concurrency": 2}},
        ).train
        return sample_training_rows(cfg)

    for runner in ("local", "dask"):
        frame, info = sample_with(runner)
        pd.testing.assert_frame_equal(frame, expected)
        assert (info.rows_seen, info.rows_sampled) == (900, 333)


def test_cli_fit_trains_on_a_reproducible_sample(history: Path, tmp_path: Path, capsys) -> None:
    def fit(name: str) -> VAEAnomalyDetector:
        code = cli.main(
            [
                "--threads",
                "1",
                "fit",
                str(history),
                "--model-dir",
                str(tmp_path / name),
                "--key-column",
                "payment_id",
                "--epochs",
                "2",
                "--seed",
                "4",
                "--max-train-rows",
                "250",
            ]
        )
        assert code == 0
        return VAEAnomalyDetector.load(tmp_path / name)

    first, second = fit("a"), fit("b")
    out = capsys.readouterr().out
    assert out.count("sampled 250 of 900 rows (seed 4)") == 2
    assert first.preprocessor_.to_dict() == second.preprocessor_.to_dict()
