"""Sensor training and scoring flows end to end on two SKAB experiments (real Prefect, real
MLflow): a windowed model per configuration, scores streamed across files, a per-entity report.

Skipped when the shared SKAB data is not beside the repository.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from flows.config import load_settings
from flows.pipeline.writers import write_parquet_atomic
from flows.score_flow import score_flow
from flows.train_flow import train_flow
from vae_core import SensorVAEDetector
from vae_core.io import read_table
from vae_core.windows import STATUS_AFTER_GAP, STATUS_OK, STATUS_WARMING_UP

SKAB = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "skab" / "valve1"
EXPERIMENTS = ("1.parquet", "2.parquet")
TRAIN_ROWS = 400
WINDOW = 10

pytestmark = [
    pytest.mark.usefixtures("prefect_server"),
    pytest.mark.skipif(
        not all((SKAB / f).is_file() for f in EXPERIMENTS),
        reason="SKAB data not found beside the repository",
    ),
]


@pytest.fixture(scope="module")
def skab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two valve experiments as two rigs: training history, then the rest in two files."""
    root = tmp_path_factory.mktemp("skab")
    frames = [pd.read_parquet(SKAB / name).assign(rig=name.split(".")[0]) for name in EXPERIMENTS]
    train = pd.concat([f.iloc[:TRAIN_ROWS] for f in frames], ignore_index=True)
    rest = [f.iloc[TRAIN_ROWS:] for f in frames]
    middle = [len(f) // 2 for f in rest]
    write_parquet_atomic(train.drop(columns=["anomaly", "changepoint"]), root / "train.parquet")
    # Each file holds both rigs; the second file continues where the first ends.
    (root / "incoming").mkdir()
    for name, part in (
        ("a", [f.iloc[:m] for f, m in zip(rest, middle, strict=True)]),
        ("b", [f.iloc[m:] for f, m in zip(rest, middle, strict=True)]),
    ):
        write_parquet_atomic(
            pd.concat(part, ignore_index=True), root / "incoming" / f"{name}.parquet"
        )
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, skab_dir: Path, mlflow_store_factory):
    out = tmp_path_factory.mktemp("sensor-out")
    store = mlflow_store_factory(out)
    settings = load_settings(
        files=[],
        environ={},
        overrides={
            "tracking": {"tracking_uri": store, "registered_model": "valves"},
            "train": {
                "data_path": str(skab_dir / "train.parquet"),
                "detector": {"max_epochs": 40, "random_state": 0},
                "sensor": {
                    "timestamp_column": "timestamp",
                    "entity_columns": ["rig"],
                    "window_length": WINDOW,
                },
            },
            "score": {
                "input_path": str(skab_dir / "incoming"),
                "output_dir": str(out / "scores"),
                "model_uri": "models:/valves@champion",
                "batch_size": 137,
            },
        },
    )
    outcome = train_flow(settings)
    scored = score_flow(settings)
    return settings, outcome, scored


def test_sensor_model_is_registered_and_scores_every_row(trained, skab_dir: Path) -> None:
    settings, outcome, scored = trained
    assert outcome.promoted and outcome.version == "1"
    client = mlflow.MlflowClient(settings.tracking.tracking_uri)
    metrics = client.get_run(outcome.run_id).data.metrics
    assert metrics["train_rows_warming_up"] == 2 * (WINDOW - 1)
    source = read_table(skab_dir / "incoming")
    scores = read_table(scored.scores_path)
    assert scored.rows_in == len(source) == scored.rows_scored == len(scores)
    assert list(scores.columns[:3]) == ["rig", "timestamp", "window_status"]
    counts = scores["window_status"].value_counts().to_dict()
    # Only the start of each rig warms up: the second file continues the first's windows.
    # (Experiment 2 has one 76 s step, longer than the gap tolerance of 3 median steps.)
    assert counts[STATUS_WARMING_UP] == 2 * (WINDOW - 1)
    assert set(counts) == {STATUS_OK, STATUS_WARMING_UP, STATUS_AFTER_GAP}
    assert scores["top_feature_1"].dropna().str.contains("@t").all()


def test_flow_scores_equal_one_piece_library_scores(trained, skab_dir: Path) -> None:
    """Record batches of 137 rows over two files give the scores of one in-memory pass."""
    settings, _, scored = trained
    model = mlflow.pyfunc.load_model("models:/valves@champion")
    detector = model.unwrap_python_model().detector
    assert isinstance(detector, SensorVAEDetector)
    source = read_table(skab_dir / "incoming").drop(columns=["anomaly", "changepoint"])
    whole = detector.score_frame(source).reset_index(drop=True)
    from_flow = read_table(scored.scores_path)
    pd.testing.assert_series_equal(from_flow["score"], whole["score"], check_dtype=False)
    assert (from_flow["is_anomaly"] == whole["is_anomaly"]).all()
    from_pyfunc = model.predict(source)
    np.testing.assert_array_equal(from_pyfunc["score"].to_numpy(), whole["score"].to_numpy())


def test_flags_follow_the_labels_and_the_report_shows_each_rig(trained, skab_dir: Path) -> None:
    _, _, scored = trained
    labels = read_table(skab_dir / "incoming")["anomaly"].to_numpy() == 1
    flags = read_table(scored.scores_path)["is_anomaly"].to_numpy()
    assert flags[labels].mean() > 2 * flags[~labels].mean()
    html = scored.report_path.read_text()
    assert 'id="over-time"' in html and "flagged spans" in html
    assert "Window status: warming_up" in html
