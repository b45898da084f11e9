"""The training and scoring flows end to end: real Prefect, real MLflow (sqlite), real Parquet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from flows.config import Settings, load_settings
from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic
from flows.score_flow import score_flow
from flows.train_flow import train_flow
from vae_core.errors import NonFiniteLossError
from vae_core.io import read_table

pytestmark = pytest.mark.usefixtures("prefect_server")

FAST_DETECTOR = {"max_epochs": 8, "random_state": 0}
REPORT_SECTIONS = ("summary", "accounting", "alerts", "threshold", "distribution", "top-anomalies")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flow-data")
    train, score, _ = make_demo_frames(seed=3, n_train=800, n_score=300)
    write_parquet_atomic(train, root / "train.parquet")
    write_parquet_atomic(score, root / "score.parquet")
    return root


def make_settings(
    store: str, data_dir: Path, out: Path, detector: dict | None = None, name: str = "payments"
) -> Settings:
    return load_settings(
        files=[],
        environ={},
        overrides={
            "tracking": {"tracking_uri": store, "registered_model": name},
            "train": {
                "data_path": str(data_dir / "train.parquet"),
                "key_columns": ["payment_id"],
                "timestamp_column": "created_at",
                "detector": {**FAST_DETECTOR, **(detector or {})},
            },
            "score": {
                "input_path": str(data_dir / "score.parquet"),
                "output_dir": str(out / "scores"),
                "model_uri": f"models:/{name}@champion",
            },
        },
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, mlflow_store_factory):
    """One champion trained and one scoring run, shared by the read-only tests below."""
    out = tmp_path_factory.mktemp("flow-out")
    store = mlflow_store_factory(out)
    settings = make_settings(store, data_dir, out)
    outcome = train_flow(settings)
    scored = score_flow(settings)
    return settings, outcome, scored


def test_first_model_becomes_champion_with_its_run_logged(trained, tmp_path: Path) -> None:
    settings, outcome, _ = trained
    assert outcome.promoted and outcome.alias == "champion" and outcome.version == "1"
    client = MlflowClient(settings.tracking.tracking_uri)
    version = client.get_model_version_by_alias("payments", "champion")
    assert str(version.version) == "1"
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    for metric in ("threshold", "val_alert_rate", "val_score_q50", "expected_alert_rate"):
        assert np.isfinite(run.data.metrics[metric])
    assert run.data.tags["row_count"] == "800"
    assert len(run.data.tags["data_fingerprint"]) == 16
    assert run.data.params["detector.max_epochs"] == "8"
    history = client.get_metric_history(outcome.run_id, "val_loss")
    assert 1 <= len(history) <= 8
    artifacts = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"config", "model_info", "plots", "training_report.md"} <= artifacts
    weight = run.data.metrics["kl_weight"]  # fitted: from beta (1) up
    assert weight >= 1.0
    report = Path(client.download_artifacts(outcome.run_id, "training_report.md", str(tmp_path)))
    assert f"- score: recon_error + {weight:.4g} * kl" in report.read_text()


def test_scoring_writes_one_row_per_input_row_and_a_report(trained, data_dir: Path) -> None:
    _, _, scored = trained
    source = read_table(data_dir / "score.parquet")
    scores = read_table(scored.scores_path)
    assert scored.rows_in == len(source) == scored.rows_scored + scored.rows_quarantined
    assert scores["payment_id"].tolist() == source["payment_id"].tolist()
    assert {"recon_error", "kl", "score", "is_anomaly", "top_feature_1"} <= set(scores.columns)
    assert scored.n_flagged == int(scores["is_anomaly"].sum())
    html = scored.report_path.read_text()
    for section in (*REPORT_SECTIONS, "over-time"):
        assert f'id="{section}"' in html, section


def test_registered_model_loads_by_alias_in_a_fresh_process(
    trained, data_dir: Path, tmp_path: Path
) -> None:
    settings, _, scored = trained
    code = (
        "import sys, mlflow, pandas as pd\n"
        "model = mlflow.pyfunc.load_model('models:/payments@champion')\n"
        f"frame = pd.read_parquet({str(data_dir / 'score.parquet')!r})\n"
        "model.predict(frame).to_parquet(sys.argv[1])\n"
    )
    out = tmp_path / "pyfunc.parquet"  # not in the run folder: its manifest lists its files
    env = {"MLFLOW_TRACKING_URI": settings.tracking.tracking_uri, "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from_pyfunc = pd.read_parquet(out)
    from_flow = read_table(scored.scores_path)
    np.testing.assert_allclose(from_pyfunc["score"], from_flow["score"], rtol=1e-6)
    assert (from_pyfunc["is_anomaly"] == from_flow["is_anomaly"]).all()


def test_a_worse_model_stays_challenger(tmp_path: Path, data_dir: Path, mlflow_store_factory):
    store = mlflow_store_factory(tmp_path)
    good = train_flow(make_settings(store, data_dir, tmp_path, name="gate"))
    # One epoch at a tiny learning rate: a model that has barely left its initialisation.
    worse = train_flow(
        make_settings(
            store,
            data_dir,
            tmp_path,
            name="gate",
            detector={"max_epochs": 1, "learning_rate": 1e-6, "warmup_epochs": 0},
        )
    )
    assert good.alias == "champion"
    assert not worse.promoted and worse.alias == "challenger"
    client = MlflowClient(store)
    assert str(client.get_model_version_by_alias("gate", "champion").version) == good.version
    assert str(client.get_model_version_by_alias("gate", "challenger").version) == worse.version
    decision = json.loads(
        mlflow.artifacts.load_text(f"runs:/{worse.run_id}/promotion/decision.json")
    )
    assert decision["promote"] is False and decision["champion"] is not None


def test_non_finite_loss_fails_the_run_and_leaves_the_champion(
    tmp_path: Path, data_dir: Path, mlflow_store_factory
) -> None:
    store = mlflow_store_factory(tmp_path)
    good = train_flow(make_settings(store, data_dir, tmp_path, name="nan"))
    with pytest.raises(NonFiniteLossError):
        train_flow(
            make_settings(store, data_dir, tmp_path, name="nan", detector={"learning_rate": 1e30})
        )
    client = MlflowClient(store)
    assert str(client.get_model_version_by_alias("nan", "champion").version) == good.version
    assert len(client.search_model_versions("name='nan'")) == 1
    runs = client.search_runs(
        [client.get_experiment_by_name("vae-anomaly").experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert runs[0].info.status == "FAILED"


def test_invalid_rows_are_quarantined_and_accounted(
    trained, tmp_path: Path, data_dir: Path
) -> None:
    settings, _, _ = trained
    frame = read_table(data_dir / "score.parquet")
    bad = frame.astype({"amount": "string"})  # a numeric column that arrived as text
    bad.loc[3, "amount"] = "twelve"
    bad.loc[7, "payment_id"] = None
    bad.loc[9, "fee"] = np.inf  # data, not an error: scored as far out
    source = write_parquet_atomic(bad, tmp_path / "bad.parquet")
    cfg = settings.model_copy(
        update={
            "score": settings.score.model_copy(
                update={
                    "input_path": str(source),
                    "output_dir": str(tmp_path / "out"),
                    "batch_size": 64,
                }
            )
        }
    )
    outcome = score_flow(cfg)
    assert outcome.rows_in == len(frame)
    assert outcome.rows_quarantined == 2
    assert outcome.rows_scored == len(frame) - 2
    quarantine = read_table(outcome.quarantine_path)
    reasons = dict(
        zip(quarantine["payment_id"].fillna("<null>"), quarantine["reason"], strict=True)
    )
    assert reasons[frame.loc[3, "payment_id"]] == "column 'amount' value 'twelve' is not a number"
    assert reasons["<null>"] == "key column 'payment_id' is null"
    scores = read_table(outcome.scores_path)
    row9 = scores.loc[scores["payment_id"] == frame.loc[9, "payment_id"]]
    assert bool(row9["is_anomaly"].iloc[0]) and row9["top_feature_1"].iloc[0] == "fee"
    assert "MISMATCH" not in outcome.report_path.read_text()


def test_scoring_run_is_logged_with_the_model_version(trained) -> None:
    settings, outcome, scored = trained
    client = MlflowClient(settings.tracking.tracking_uri)
    run = client.get_run(scored.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["model_version"] == outcome.version
    assert run.data.tags["model_uri"] == f"models:/payments/{outcome.version}"
    metrics = run.data.metrics
    assert metrics["n_rows"] == scored.rows_in and metrics["n_flagged"] == scored.n_flagged
    assert metrics["alert_rate"] == pytest.approx(scored.n_flagged / scored.rows_scored)
    assert {"score_q0.5", "score_q0.99"} <= set(metrics)
    assert "report" in {a.path for a in client.list_artifacts(scored.run_id)}


def test_labelled_evaluation_and_time_window(
    tmp_path: Path, data_dir: Path, mlflow_store_factory
) -> None:
    _, score, labels = make_demo_frames(seed=4, n_train=10, n_score=400)
    evaluation = write_parquet_atomic(
        score.assign(label=labels.to_numpy().astype(int)), tmp_path / "eval.parquet"
    )
    train = read_table(data_dir / "train.parquet")
    start = train["created_at"].sort_values().iloc[100]
    store = mlflow_store_factory(tmp_path)
    settings = make_settings(store, data_dir, tmp_path, name="labelled")
    data = settings.model_dump()
    data["train"]["evaluation"] = {"path": str(evaluation), "label_column": "label"}
    data["train"]["time_window_start"] = start.to_pydatetime()
    settings = Settings.model_validate(data)
    outcome = train_flow(settings)
    assert outcome.metrics["eval_roc_auc"] > 0.7
    assert 0 <= outcome.metrics["eval_average_precision"] <= 1
    run = MlflowClient(store).get_run(outcome.run_id)
    assert run.data.tags["row_count"] == str(int((train["created_at"] >= start).sum()))
    assert "eval_f1" in run.data.metrics


def test_scoring_without_a_champion_fails_fast_naming_what_it_tried(
    tmp_path: Path, data_dir: Path, mlflow_store_factory
) -> None:
    from flows.mlops.tracking import ModelResolutionError

    store = mlflow_store_factory(tmp_path)
    settings = make_settings(store, data_dir, tmp_path, name="nobody")
    with pytest.raises(ModelResolutionError) as caught:
        score_flow(settings)
    message = str(caught.value)
    assert "nobody" in message and "champion" in message and store in message
    assert not (tmp_path / "scores").exists()  # nothing written before the model resolved
