"""flows.mlops.tracking against a real MLflow sqlite store: runs, the pyfunc model, the registry."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from flows.mlops import tracking
from flows.mlops.tracking import ModelResolutionError
from vae_core import VAEAnomalyDetector, VAEAnomalyError
from vae_core.errors import ModelFileError
from vae_core.training import EpochRecord

torch.set_num_threads(1)  # tiny models: threads only add contention on small machines

MODEL = "vae-test"
SCORE_COLUMNS = ["recon_error", "kl", "score"]


def make_frame(n_rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Every column kind the signature maps: float, int, str, category, bool, key, time."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_rows, 2))
    frame = pd.DataFrame(
        {
            "id": np.arange(n_rows, dtype=np.int64),
            "ts": pd.date_range("2024-01-01", periods=n_rows, freq="min"),
            "temp": z[:, 0] + 0.1 * rng.normal(size=n_rows),
            "pressure": z[:, 0] - z[:, 1] + 0.1 * rng.normal(size=n_rows),
            "count": rng.poisson(5 + 2 * (z[:, 1] > 0), size=n_rows).astype(np.int64),
            "site": np.where(z[:, 1] > 0, "north", "south").astype(object),
            "grade": pd.Categorical(np.where(z[:, 0] > 0.5, "high", "low")),
            "ok": z[:, 0] + z[:, 1] > 0,
        }
    )
    frame.loc[rng.choice(n_rows, 5, replace=False), "temp"] = np.nan
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def detector(frame: pd.DataFrame) -> VAEAnomalyDetector:
    return VAEAnomalyDetector(max_epochs=5, random_state=0, key_columns=("id",)).fit(frame)


@pytest.fixture
def registered(mlflow_store: str, detector, frame) -> tracking.RegisteredVersion:
    """The detector logged in a finished run, registered as version 1, alias champion."""
    tracking.configure_tracking(mlflow_store)
    run_id = tracking.start_run("tests", "train", {"job": "test"})
    version = tracking.log_detector_model(run_id, detector, MODEL, frame.head(5))
    tracking.set_alias(MODEL, "champion", version.version)
    tracking.end_run(run_id)
    return version


# -- the pyfunc -----------------------------------------------------------------------------
FRESH_PROCESS = textwrap.dedent("""
    import sys
    import mlflow, pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    import vae_core  # already imported by the model: from its own code/ copy
    out = model.predict(pd.read_parquet(sys.argv[2]))
    out.to_parquet(sys.argv[3])
    print(vae_core.__file__)
""")


def test_registered_pyfunc_in_a_fresh_process_gives_the_library_scores(
    registered, detector, frame, tmp_path, mlflow_store
):
    frame.to_parquet(tmp_path / "input.parquet")
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store}
    env.pop("MLFLOW_REGISTRY_URI", None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            FRESH_PROCESS,
            f"models:/{MODEL}@champion",
            str(tmp_path / "input.parquet"),
            str(tmp_path / "output.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = pd.read_parquet(tmp_path / "output.parquet")
    expected = detector.score_frame(frame)

    assert list(served.columns) == ["id", "ts", *expected.columns]  # carried columns first
    pd.testing.assert_series_equal(served["ts"], frame["ts"], check_dtype=False)
    assert served["id"].tolist() == frame["id"].tolist()
    for column in SCORE_COLUMNS:
        np.testing.assert_allclose(served[column], expected[column], rtol=0, atol=1e-12)
    assert served["is_anomaly"].tolist() == expected["is_anomaly"].tolist()
    assert served["top_feature_1"].tolist() == expected["top_feature_1"].tolist()
    # The model carries its own vae_core: loading needs no checkout of this repository.
    assert "code/vae_core" in Path(result.stdout.strip().splitlines()[-1]).as_posix()


def test_pyfunc_in_process_and_without_key_columns(registered, detector, frame):
    model = mlflow.pyfunc.load_model(registered.model_uri)
    features = frame.drop(columns=["id", "ts"])
    out = model.predict(features)
    assert "id" not in out.columns
    np.testing.assert_array_equal(out["score"], detector.decision_function(frame))


def _strict(text: str) -> object:
    def refuse(constant: str) -> None:
        raise ValueError(f"bare {constant} in strict JSON")

    return json.loads(text, parse_constant=refuse)


def test_pyfunc_takes_any_numeric_dtype_as_the_flow_does(registered, detector, frame):
    """Through MLflow's own schema enforcement: an int column as float with a null, a float
    column as int64, nullable and text numbers; scores as the library gives for the same
    values."""
    model = mlflow.pyfunc.load_model(registered.model_uri)
    varied = frame.copy()
    varied["count"] = varied["count"].astype("float64")
    varied.loc[3, "count"] = np.nan
    varied["pressure"] = varied["pressure"].round().astype("int64")
    varied["temp"] = varied["temp"].astype("Float64")
    out = model.predict(varied)
    expected = detector.score_frame(varied.assign(temp=frame["temp"]))
    np.testing.assert_array_equal(out["score"], expected["score"])
    assert out["id"].tolist() == frame["id"].tolist()

    as_text = frame.assign(temp=frame["temp"].map(lambda v: None if np.isnan(v) else repr(v)))
    np.testing.assert_array_equal(
        model.predict(as_text)["score"], detector.decision_function(frame)
    )
    with pytest.raises(VAEAnomalyError, match="column 'temp' must be numeric but row 2"):
        model.predict(frame.assign(temp=["1.0", "2.0", "inf", *["3.0"] * (len(frame) - 3)]))


def test_the_input_example_is_strict_json(mlflow_store, detector, frame, tmp_path):
    example = frame.head(5).copy()
    example.loc[0, "temp"] = np.nan
    example.loc[1, "pressure"] = np.inf
    example.loc[3, "ts"] = pd.NaT  # MLflow would write the text "NaT"
    example.loc[4, "site"] = None
    tracking.configure_tracking(mlflow_store)
    run_id = tracking.start_run("tests", "train", {"job": "test"})
    version = tracking.log_detector_model(run_id, detector, MODEL, example)
    tracking.end_run(run_id)
    local = Path(
        mlflow.artifacts.download_artifacts(version.model_uri, dst_path=str(tmp_path / "m"))
    )
    examples = {p.name: _strict(p.read_text()) for p in local.glob("*input_example*.json")}
    assert set(examples) >= {"input_example.json", "serving_input_example.json"}
    # As a server would take it: the JSON payload parsed and scored by MLflow.
    mlflow.models.predict(
        version.model_uri,
        input_path=str(local / "serving_input_example.json"),
        content_type="json",
        output_path=str(tmp_path / "served.json"),
        env_manager="local",
    )
    # (The answer is MLflow's to write: a missing timestamp comes back as NaN.)
    served = json.loads((tmp_path / "served.json").read_text())["predictions"]
    assert len(served) == len(example) and all(row["score"] > 0 for row in served)
    split = examples["serving_input_example.json"]["dataframe_split"]
    temp, pressure = split["columns"].index("temp"), split["columns"].index("pressure")
    assert split["data"][0][temp] is None and split["data"][1][pressure] is None
    ts, site = split["columns"].index("ts"), split["columns"].index("site")
    assert split["data"][3][ts] is None and split["data"][4][site] is None
    assert split["data"][2][temp] == pytest.approx(frame.loc[2, "temp"])


def test_logged_model_signature_requirements_and_layout(registered, detector, tmp_path):
    local = mlflow.artifacts.download_artifacts(
        registered.model_uri, dst_path=str(tmp_path / "download")
    )
    model = Model.load(local)
    inputs = {spec.name: spec for spec in model.signature.inputs.inputs}
    types = {name: repr(spec.type) for name, spec in inputs.items()}
    # Numeric columns take any numeric dtype, with nulls: the pyfunc coerces them.
    assert "Any" in types["temp"] and "Any" in types["count"]
    assert types["site"] == repr(mlflow.types.DataType.string)
    assert types["ok"] == repr(mlflow.types.DataType.boolean)
    assert "Any" in types["grade"]  # MLflow refuses pandas categoricals for string columns
    assert inputs["id"].required is False and inputs["temp"].required is True
    assert inputs["ts"].required is False  # datetime columns are carried, not modelled
    outputs = [spec.name for spec in model.signature.outputs.inputs]
    assert outputs[:6] == ["id", "ts", "recon_error", "kl", "score", "is_anomaly"]

    lines = (Path(local) / "requirements.txt").read_text().splitlines()
    pinned = {r.split("==")[0]: r.split("==")[1] for r in lines if "==" in r}
    assert {"torch", "numpy", "pandas", "scikit-learn", "safetensors", "mlflow"} <= set(pinned)
    assert pinned["torch"] == torch.__version__.split("+")[0]
    # The CPU build of torch: its index before the pin, as pip reads requirements.txt.
    index = lines.index("--extra-index-url https://download.pytorch.org/whl/cpu")
    assert index < next(i for i, r in enumerate(lines) if r.startswith("torch=="))
    assert not any(r.startswith("vae-anomaly") for r in lines)
    assert (Path(local) / "code" / "vae_core" / "detector.py").is_file()
    assert not list(Path(local).rglob("*.pkl"))  # nothing pickled

    version = MlflowClient().get_model_version(MODEL, registered.version)
    assert float(version.tags["threshold"]) == pytest.approx(detector.threshold_.value)
    listed = json.loads((Path(local) / "artifacts" / "detector" / "files.json").read_text())
    assert version.tags["files_sha256"] == listed["digest"]
    assert version.run_id == registered.run_id
    # The model belongs to the run's experiment and its files sit beside the database.
    experiment = MlflowClient().get_experiment_by_name("tests")
    logged = MlflowClient().get_logged_model(registered.model_id)
    assert logged.experiment_id == experiment.experiment_id
    assert logged.artifact_location.startswith((tmp_path / "mlruns" / "tests").as_uri())


# -- resolution -----------------------------------------------------------------------------
def test_resolve_by_alias_version_and_bare_name(registered):
    expected = tracking.ResolvedModel(
        f"models:/{MODEL}/1", MODEL, "1", registered.run_id, "champion"
    )
    assert tracking.resolve_model(f"models:/{MODEL}@champion") == expected
    assert tracking.resolve_model(MODEL) == expected
    by_version = tracking.resolve_model(f"models:/{MODEL}/1")
    assert (by_version.uri, by_version.version, by_version.alias) == (
        f"models:/{MODEL}/1",
        "1",
        None,
    )


def test_load_detector_restores_the_registered_model(registered, detector, frame):
    loaded = tracking.load_detector(tracking.resolve_model(MODEL))
    np.testing.assert_array_equal(
        loaded.decision_function(frame), detector.decision_function(frame)
    )
    assert loaded.threshold_ == detector.threshold_


def test_load_detector_checks_the_versions_file_list_digest(registered, detector, frame):
    client = MlflowClient()
    resolved = tracking.resolve_model(MODEL)
    digest = client.get_model_version(MODEL, registered.version).tags["files_sha256"]
    client.set_model_version_tag(MODEL, registered.version, "files_sha256", "0" * 64)
    with pytest.raises(ModelFileError) as caught:
        tracking.load_detector(resolved)
    message = str(caught.value)
    assert f"{registered.model_uri}" in message and "detector/files.json" in message
    assert digest in message and "registry recorded" in message
    # A version logged before the tag existed is checked against its own file list.
    client.delete_model_version_tag(MODEL, registered.version, "files_sha256")
    loaded = tracking.load_detector(resolved)
    np.testing.assert_array_equal(
        loaded.decision_function(frame), detector.decision_function(frame)
    )


def test_missing_alias_names_the_uri_the_model_and_the_alias(registered, mlflow_store):
    with pytest.raises(ModelResolutionError) as caught:
        tracking.resolve_model(f"models:/{MODEL}@staging")
    message = str(caught.value)
    assert mlflow_store in message and MODEL in message and "@staging" in message
    assert "@champion -> v1" in message  # what does exist
    assert isinstance(caught.value, VAEAnomalyError)
    with pytest.raises(ModelResolutionError, match="no registered model named 'other'"):
        tracking.resolve_model("other")
    with pytest.raises(ModelResolutionError, match="version 7"):
        tracking.resolve_model(f"models:/{MODEL}/7")
    with pytest.raises(ModelResolutionError, match="not understood"):
        tracking.resolve_model("runs:/abc/model")


def test_unreachable_registries_fail_fast(mlflow_store, tmp_path):
    missing = tmp_path / "nowhere" / "mlflow.db"
    tracking.configure_tracking(f"sqlite:///{missing}")
    with pytest.raises(ModelResolutionError, match="does not exist") as caught:
        tracking.resolve_model(MODEL)
    assert str(missing) in str(caught.value) and "@champion" in str(caught.value)
    assert not missing.exists()  # resolving never creates an empty store

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tracking.configure_tracking(f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    with pytest.raises(ModelResolutionError, match="127.0.0.1") as caught:
        tracking.resolve_model(MODEL)
    assert time.perf_counter() - started < 15
    assert "champion" in str(caught.value)
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # restored


# -- runs, params, metrics, aliases ---------------------------------------------------------
def test_run_logging_round_trip(mlflow_store, tmp_path):
    tracking.configure_tracking(mlflow_store)
    run_id = tracking.start_run("tests", "logging", {"job": "test"})
    assert tracking.start_run("tests", "again", {}) != run_id  # experiment reused
    tracking.log_params(run_id, {"a": {"b": 1, "c": [1, 2]}, "long": "x" * 10_000, "empty": {}})
    tracking.log_params(run_id, {f"p{i}": i for i in range(250)})  # more than one batch
    tracking.log_metrics(run_id, {"alert_rate": 0.25, "flag": True, "skipped": None})
    tracking.log_text(run_id, "# report", "report/summary.md")
    tracking.log_figure_png(run_id, b"\x89PNG\r\n\x1a\n", "plots/hist.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.txt").write_text("x")
    tracking.log_artifact(run_id, tmp_path / "out" / "x.txt", "files")
    tracking.set_run_tags(run_id, {"row_count": 300})
    tracking.end_run(run_id, "FAILED")

    run = MlflowClient().get_run(run_id)
    assert run.data.params["a.b"] == "1" and run.data.params["a.c"] == "[1, 2]"
    assert run.data.params["empty"] == "{}"
    assert len(run.data.params["long"]) == 6000 and run.data.params["long"].endswith("...")
    assert run.data.params["p249"] == "249"
    assert tracking.get_run_metrics(run_id) == {"alert_rate": 0.25, "flag": 1.0}
    assert run.data.tags["row_count"] == "300" and run.data.tags["job"] == "test"
    assert run.info.status == "FAILED"
    listed = {a.path for a in MlflowClient().list_artifacts(run_id, "report")}
    listed |= {a.path for a in MlflowClient().list_artifacts(run_id, "plots")}
    listed |= {a.path for a in MlflowClient().list_artifacts(run_id, "files")}
    assert listed == {"report/summary.md", "plots/hist.png", "files/x.txt"}
    assert (tmp_path / "mlruns" / "tests").is_dir()  # artifacts beside the database


def test_epoch_logger_records_each_epoch(mlflow_store, frame):
    tracking.configure_tracking(mlflow_store)
    run_id = tracking.start_run("tests", "epochs", {})
    fitted = VAEAnomalyDetector(max_epochs=4, patience=50, random_state=1).fit(
        frame, epoch_callback=tracking.epoch_logger(run_id)
    )
    history = fitted.training_results_[0].history
    client = MlflowClient()
    train = client.get_metric_history(run_id, "train_loss")
    val = client.get_metric_history(run_id, "val_loss")
    assert [m.step for m in train] == [r.epoch for r in history] == [0, 1, 2, 3]
    assert [m.value for m in val] == pytest.approx([r.val_loss for r in history])

    ensemble = tracking.epoch_logger(run_id, n_models=2)
    for member in (0, 1):
        ensemble(EpochRecord(member, 0, 1.0 + member, 2.0, 2.0, 0.1))
    assert client.get_metric_history(run_id, "member1/train_loss")[0].value == 2.0
    assert len(client.get_metric_history(run_id, "member0/val_loss")) == 1


def test_aliases_move_and_missing_ones_are_none(registered, detector, frame):
    assert tracking.get_alias_version(MODEL, "champion") == "1"
    assert tracking.get_alias_version(MODEL, "challenger") is None
    assert tracking.get_alias_version("no-such-model", "champion") is None
    run_id = tracking.start_run("tests", "second", {})
    second = tracking.log_detector_model(run_id, detector, MODEL, frame.head(3))
    assert second.version == "2" and second.model_uri == f"models:/{MODEL}/2"
    tracking.set_alias(MODEL, "challenger", second.version)
    tracking.set_version_tag(MODEL, second.version, "promotion", "kept as challenger")
    assert tracking.resolve_model(f"models:/{MODEL}@challenger").version == "2"
    tracking.set_alias(MODEL, "champion", second.version)
    assert tracking.get_alias_version(MODEL, "champion") == "2"
    version = MlflowClient().get_model_version(MODEL, "2")
    assert version.tags["promotion"] == "kept as challenger"


def test_configure_tracking_creates_the_database_folder(mlflow_store, tmp_path):
    db = tmp_path / "deep" / "er" / "mlflow.db"
    tracking.configure_tracking(f"sqlite:///{db}")
    assert db.parent.is_dir()
    assert mlflow.get_tracking_uri() == mlflow.get_registry_uri() == f"sqlite:///{db}"
    assert tracking.sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db")
    assert tracking.sqlite_path("http://host:5000") is None


def test_store_and_log_model_timings(mlflow_store, mlflow_store_timings, detector, frame):
    """Not an assertion on speed: records what the fixtures and log_model cost."""
    tracking.configure_tracking(mlflow_store)
    run_id = tracking.start_run("tests", "timing", {})
    started = time.perf_counter()
    tracking.log_detector_model(run_id, detector, MODEL, frame.head(5))
    seconds = {**mlflow_store_timings, "log_detector_model_s": time.perf_counter() - started}
    print(json.dumps({k: round(v, 2) for k, v in seconds.items()}))
    assert seconds["log_detector_model_s"] < 60
