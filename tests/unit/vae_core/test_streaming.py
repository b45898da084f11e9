"""The detector protocol: both kinds stream batches the same way and load by their kind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from vae_core import SensorVAEDetector, VAEAnomalyDetector
from vae_core.errors import ModelFileError, SchemaError
from vae_core.model_kinds import KINDS, load_model, model_kind
from vae_core.persistence import MANIFEST_NAME
from vae_core.sensor import SENSOR_MANIFEST
from vae_core.streaming import Detector

SENSOR_PARAMS = {"max_epochs": 4, "hidden_sizes": (16, 8), "latent_dim": 2, "random_state": 0}
TABULAR_PARAMS = {**SENSOR_PARAMS, "key_columns": ("id",)}


def tabular_frame(n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    z = rng.normal(size=n)
    return pd.DataFrame(
        {
            "id": np.arange(n),
            "ts": pd.date_range("2024-01-01", periods=n, freq="min"),
            "a": z + 0.1 * rng.normal(size=n),
            "b": 2 * z + 0.1 * rng.normal(size=n),
            "kind": np.where(z > 0, "up", "down"),
        }
    )


def sensor_frame(n: int = 160) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    t = np.arange(n)
    parts = [
        pd.DataFrame(
            {
                "ts": pd.Timestamp("2024-05-01") + pd.to_timedelta(t, unit="s"),
                "rig": rig,
                "pressure": np.sin(t / 5 + k) + 0.05 * rng.normal(size=n),
                "flow": np.cos(t / 5 + k) + 0.05 * rng.normal(size=n),
            }
        )
        for k, rig in enumerate(("a", "b"))
    ]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def tabular() -> tuple[VAEAnomalyDetector, pd.DataFrame]:
    frame = tabular_frame()
    detector = VAEAnomalyDetector(**TABULAR_PARAMS).fit(frame)
    return detector, frame


@pytest.fixture(scope="module")
def sensor() -> tuple[SensorVAEDetector, pd.DataFrame]:
    frame = sensor_frame()
    detector = SensorVAEDetector(
        timestamp_column="ts", entity_columns=("rig",), window_length=4,
        detector_params=SENSOR_PARAMS,
    ).fit(frame)  # fmt: skip
    return detector, frame


@pytest.fixture(params=["tabular", "sensor"])
def fitted(request: pytest.FixtureRequest, tabular, sensor) -> tuple[Detector, pd.DataFrame]:
    return tabular if request.param == "tabular" else sensor


def test_the_output_table_is_the_carried_columns_then_the_declared_score_columns(
    fitted: tuple[Detector, pd.DataFrame],
) -> None:
    detector, frame = fitted
    table = detector.stream().score(frame, "data.parquet").to_table()
    declared = detector.output_schema()
    carried = table.column_names[: len(table.column_names) - len(declared)]
    assert set(carried) <= {*detector.schema_.key_columns, *detector.schema_.ignored_columns}
    assert set(detector.required_columns()) <= set(carried)
    scores = table.select(declared.names)
    for field in declared:
        found = scores.schema.field(field.name).type
        if pa.types.is_large_string(field.type):  # text, whichever offset width
            assert pa.types.is_string(found) or pa.types.is_large_string(found), field
        else:
            assert found == field.type, field
    assert table.num_rows == len(frame)


def test_two_stage_scoring_equals_one_piece_scoring(
    fitted: tuple[Detector, pd.DataFrame],
) -> None:
    detector, frame = fitted
    scorer = detector.stream()
    first, second = frame.iloc[:150], frame.iloc[150:]
    pieces = [scorer.score_prepared(scorer.prepare(part, "data")) for part in (first, second)]
    joined = np.concatenate([piece.score for piece in pieces])
    # Equal up to float32 summation order: BLAS sums depend on the batch's shape.
    expected = detector.score_frame(frame)["score"].to_numpy()
    np.testing.assert_allclose(joined, expected, rtol=1e-6)
    flags = np.concatenate([piece.is_anomaly for piece in pieces])
    np.testing.assert_array_equal(flags, detector.predict(frame).astype(bool))


def test_scored_rows_and_timelines(tabular, sensor) -> None:
    detector, frame = tabular
    batch = detector.stream().score(frame)
    assert batch.scored is None and batch.status is None
    assert list(batch.timeline(np.arange(3)).columns) == ["ts"]
    windowed, series = sensor
    scored = windowed.stream().score(series)
    # The first window_length - 1 rows of each rig have no full window, hence no score.
    assert len(scored.scored) == len(series) - 2 * 3
    assert np.isnan(scored.score[np.setdiff1d(np.arange(len(series)), scored.scored)]).all()
    assert list(scored.timeline(scored.scored[:2]).columns) == ["ts", "entity"]


def test_a_missing_key_column_is_named_before_any_scoring(tabular) -> None:
    detector, frame = tabular
    with pytest.raises(SchemaError, match=r"data.parquet: key column\(s\) \['id'\]"):
        detector.stream().prepare(frame.drop(columns=["id"]), "data.parquet")


def test_kinds_are_declared_and_registered() -> None:
    assert VAEAnomalyDetector.kind == "tabular" and not VAEAnomalyDetector.ordered_stream
    assert SensorVAEDetector.kind == "sensor" and SensorVAEDetector.ordered_stream
    assert {kind: cls for kind, (cls, _) in KINDS.items()} == {
        "tabular": VAEAnomalyDetector,
        "sensor": SensorVAEDetector,
    }


def test_load_model_reads_the_kind_from_the_manifest(
    tmp_path: Path, fitted: tuple[Detector, pd.DataFrame]
) -> None:
    detector, frame = fitted
    path = detector.save(tmp_path / "model")
    assert model_kind(path) == detector.kind
    loaded = load_model(path)
    assert type(loaded) is type(detector)
    np.testing.assert_array_equal(
        loaded.decision_function(frame), detector.decision_function(frame)
    )


@pytest.mark.parametrize("manifest_name", [MANIFEST_NAME, SENSOR_MANIFEST])
def test_a_model_saved_before_kinds_were_written_loads_by_its_manifest_file(
    tmp_path: Path, tabular, sensor, manifest_name: str
) -> None:
    detector = tabular[0] if manifest_name == MANIFEST_NAME else sensor[0]
    path = detector.save(tmp_path / "model")
    manifest = path / manifest_name
    data = json.loads(manifest.read_text())
    del data["kind"]
    manifest.write_text(json.dumps(data))
    assert model_kind(path) == detector.kind


def test_an_unknown_kind_or_no_manifest_is_a_model_file_error(tmp_path: Path, tabular) -> None:
    path = tabular[0].save(tmp_path / "model")
    manifest = path / MANIFEST_NAME
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "kind": "quantum"}))
    with pytest.raises(ModelFileError, match="kind 'quantum' is not one this vae_core knows"):
        load_model(path)
    with pytest.raises(ModelFileError, match="is not a saved model: model.json is missing"):
        load_model(tmp_path / "empty")


def test_a_conformal_threshold_adds_each_rows_p_value(tmp_path: Path) -> None:
    """The p_value column follows is_anomaly in every output path, is the conformal
    p-value of the row's score, and flags stay ``score > threshold``."""
    frame = tabular_frame()
    detector = VAEAnomalyDetector(**TABULAR_PARAMS, threshold_method="conformal", fdr=0.2)
    detector.fit(frame)
    threshold = detector.threshold_
    assert threshold.method == "conformal" and threshold.calibration
    table = detector.stream().score(frame).to_table()
    assert table.schema.names[table.schema.names.index("is_anomaly") + 1] == "p_value"
    assert list(detector.output_schema()) == list(table.schema)[-len(detector.output_schema()) :]
    scores = table.column("score").to_numpy()
    np.testing.assert_array_equal(table.column("p_value").to_numpy(), threshold.p_values(scores))
    np.testing.assert_array_equal(table.column("is_anomaly").to_numpy(), scores > threshold.value)
    in_pandas = detector.score_frame(frame)
    np.testing.assert_array_equal(in_pandas["p_value"].to_numpy(), threshold.p_values(scores))
    assert ((in_pandas["p_value"] > 0) & (in_pandas["p_value"] <= 1)).all()


def test_other_thresholds_output_no_p_value(tabular) -> None:
    detector, frame = tabular
    assert "p_value" not in detector.stream().score(frame).to_table().schema.names
    assert "p_value" not in detector.output_schema().names
