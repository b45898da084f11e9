"""Fixtures of the reliability tests: small demo data, one library model, one champion.

Everything is trained once per session and shared read-only: a model directory for the
library commands (``fit``/``score-file``) and an MLflow store whose registered model
``rel`` has a ``champion`` for the flows and the flow commands (``train``/``score``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from reliability_helpers import TINY_DETECTOR, Champion, flow_settings

from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic
from vae_core import VAEAnomalyDetector


@pytest.fixture(scope="session")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    train, score, _ = make_demo_frames(seed=1, n_train=300, n_score=120)
    return train, score


@pytest.fixture(scope="session")
def good_files(tmp_path_factory: pytest.TempPathFactory, frames) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rel-data")
    train, score = frames
    return {
        "train": write_parquet_atomic(train, root / "train.parquet"),
        "score": write_parquet_atomic(score, root / "score.parquet"),
    }


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory, frames) -> Path:
    """A library model directory (what ``fit`` writes); never modify it in a test."""
    params = {**TINY_DETECTOR, "hidden_sizes": tuple(TINY_DETECTOR["hidden_sizes"])}
    detector = VAEAnomalyDetector(key_columns=("payment_id",), **params).fit(frames[0])
    return detector.save(tmp_path_factory.mktemp("rel-model") / "model")


@pytest.fixture(scope="session")
def champion(
    tmp_path_factory: pytest.TempPathFactory,
    good_files: dict[str, Path],
    mlflow_store_factory: Callable[[Path], str],
    prefect_server: None,
) -> Champion:
    """Model ``rel`` trained by the training flow and promoted to champion (version 1)."""
    from flows.train_flow import train_flow

    folder = tmp_path_factory.mktemp("rel-store")
    store = mlflow_store_factory(folder)
    outcome = train_flow(
        flow_settings(store, good_files["train"], good_files["score"], folder / "out")
    )
    assert outcome.alias == "champion" and outcome.version == "1"
    return Champion(store, folder, good_files["train"], good_files["score"])
