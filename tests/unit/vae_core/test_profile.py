"""The training profile: values on known data, JSON round trip, saved and loaded with models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import FAST_PARAMS
from vae_core import SensorVAEDetector, VAEAnomalyDetector, persistence
from vae_core.detector_files import PROFILE_NAME
from vae_core.errors import ModelFileError
from vae_core.model_files import FILES_NAME
from vae_core.profile import (
    MAX_LEVELS,
    QUANTILE_LEVELS,
    DataProfile,
    infer_kind,
    profile_column,
    psi,
)


def known_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ramp": np.arange(100.0),
            "word": ["x"] * 60 + ["y"] * 39 + [None],
            "flag": [True, False] * 50,
            "wild": [1e308] * 30 + [np.inf] * 30 + list(range(39)) + [np.nan],
            "flat": [5.0] * 100,
            "empty": [np.nan] * 100,
            "count": pd.array([1, 2, None, 4] * 25, dtype="Int64"),
        }
    )


def test_numeric_values_on_known_data() -> None:
    ramp = DataProfile.from_frame(known_frame()).columns["ramp"]
    assert ramp.kind == "numeric"
    assert ramp.missing_share == 0.0 and ramp.non_finite_share == 0.0
    expected = np.quantile(np.arange(100.0), QUANTILE_LEVELS)
    assert list(ramp.quantiles.values()) == pytest.approx(expected)
    assert list(ramp.quantiles) == ["0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"]
    assert ramp.quantile(0.5) == pytest.approx(49.5)
    assert len(ramp.bin_edges) == 11 and ramp.bin_edges[0] == 0.0 and ramp.bin_edges[-1] == 99.0
    assert ramp.bin_shares == pytest.approx([0.1] * 10)
    assert (ramp.min, ramp.max, ramp.n_distinct) == (0.0, 99.0, 100)
    assert ramp.levels is None and ramp.other_count is None


def test_missing_non_finite_constant_and_empty_columns() -> None:
    columns = DataProfile.from_frame(known_frame()).columns
    wild = columns["wild"]
    assert wild.missing_share == pytest.approx(0.01)
    assert wild.non_finite_share == pytest.approx(0.30)
    assert wild.max == 1e308 and all(np.isfinite(list(wild.quantiles.values())))
    assert sum(wild.bin_shares) == pytest.approx(1.0)
    flat = columns["flat"]
    assert flat.bin_edges == [5.0, 5.0] and flat.bin_shares == [1.0]
    assert flat.min == flat.max == 5.0 and flat.n_distinct == 1
    empty = columns["empty"]
    assert empty.missing_share == 1.0
    assert empty.quantiles is None and empty.bin_edges == [] and empty.min is None
    count = columns["count"]
    assert count.kind == "numeric" and count.missing_share == pytest.approx(0.25)
    assert count.quantile(0.5) == pytest.approx(2.0)


def test_categorical_and_boolean_levels() -> None:
    columns = DataProfile.from_frame(known_frame()).columns
    word = columns["word"]
    assert word.kind == "categorical"
    assert word.levels == {"x": 60, "y": 39} and word.other_count == 0
    assert word.missing_share == pytest.approx(0.01) and word.quantiles is None
    flag = columns["flag"]
    assert flag.kind == "boolean" and flag.levels == {"False": 50, "True": 50}


def test_booleans_with_a_null_are_booleans_whatever_their_dtype() -> None:
    with_null = pd.Series([True, None, False, True], dtype=object)  # as Parquet reads it
    assert infer_kind(with_null) == "boolean"
    column = profile_column(with_null, "categorical")  # the schema's kind for it
    assert column.kind == "boolean" and column.levels == {"True": 2, "False": 1}
    assert column.missing_share == 0.25
    assert infer_kind(pd.Series(["True", "False"], dtype=object)) == "categorical"


def test_levels_keep_the_most_frequent_and_count_the_rest() -> None:
    values = [f"l{i:03d}" for i in range(150) for _ in range(1 + (i < 10))]
    column = profile_column(pd.Series(values), "categorical")
    assert len(column.levels) == MAX_LEVELS
    assert all(column.levels[f"l{i:03d}"] == 2 for i in range(10))
    assert column.other_count == 50 and column.n_distinct == 150


def test_kinds_given_override_dtypes_and_bad_kinds_are_refused() -> None:
    frame = pd.DataFrame({"code": ["1", "2", "x"], "n": [1.0, 2.0, 3.0]})
    profile = DataProfile.from_frame(frame, ["code", "n"], {"code": "numeric"})
    assert profile.columns["code"].kind == "numeric"
    assert profile.columns["code"].missing_share == pytest.approx(1 / 3)  # "x" is no number
    assert profile.columns["n"].kind == "numeric"
    assert DataProfile.from_frame(frame, ["n", "code"], ["numeric", "categorical"]).columns[
        "code"
    ].levels == {"1": 1, "2": 1, "x": 1}
    with pytest.raises(ValueError, match="kind 'text'"):
        DataProfile.from_frame(frame, ["n"], {"n": "text"})
    assert [infer_kind(frame[c]) for c in frame] == ["categorical", "numeric"]


def test_json_round_trip_is_exact_and_strict() -> None:
    profile = DataProfile.from_frame(known_frame())
    text = json.dumps(profile.to_dict(), allow_nan=False)  # no bare NaN or Infinity
    back = DataProfile.from_dict(json.loads(text))
    assert back == profile
    data = json.loads(text)
    assert data["version"] == 1 and data["n_rows"] == 100
    assert set(data["columns"]["ramp"]) >= {
        "kind",
        "missing_share",
        "non_finite_share",
        "quantiles",
        "bin_edges",
        "bin_shares",
        "levels",
        "other_count",
    }
    with pytest.raises(ValueError, match="version"):
        DataProfile.from_dict({**data, "version": 99})
    with pytest.raises(ValueError, match="JSON object"):
        DataProfile.from_dict([1, 2])


def test_psi_is_zero_for_the_same_data_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=5000)
    column = profile_column(pd.Series(train), "numeric")
    same = psi(column.bin_shares, column.shares_of(rng.normal(size=5000)))
    moved = psi(column.bin_shares, column.shares_of(rng.normal(loc=1.0, size=5000)))
    assert same < 0.02 < 0.25 < moved
    assert column.shares_of([np.inf, np.nan]).sum() == 0.0
    assert profile_column(pd.Series(["a"]), "categorical").shares_of([1.0]) is None


def test_detector_profile_covers_the_features(small_frame: pd.DataFrame) -> None:
    detector = VAEAnomalyDetector(**FAST_PARAMS, key_columns=("id",)).fit(small_frame)
    profile = detector.training_profile_
    assert profile is not None and profile.n_rows == len(small_frame)
    assert list(profile.columns) == detector.schema_.feature_names  # keys and ts left out
    assert profile.columns["flag"].kind == "boolean"
    assert profile.columns["grade"].kind == "categorical"
    assert profile.columns["sensor_0"].kind == "numeric"
    assert profile == DataProfile.from_frame(small_frame, detector.schema_.feature_names)


def test_sensor_profile_covers_the_channels() -> None:
    rng = np.random.default_rng(0)
    n = 200
    series = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="1s"),
            "a": np.sin(np.arange(n) / 5) + rng.normal(0, 0.05, n),
            "b": np.arange(n, dtype=float) + rng.normal(0, 0.1, n),
        }
    )
    params = {"max_epochs": 3, "hidden_sizes": (8,), "latent_dim": 2, "random_state": 0}
    detector = SensorVAEDetector(
        timestamp_column="ts", window_length=5, detector_params=params
    ).fit(series)
    profile = detector.training_profile_
    assert list(profile.columns) == ["a", "b"] and profile.n_rows == n
    assert profile.columns["b"].quantile(0.5) == pytest.approx(99.5, abs=1.0)


def test_detector_profile_is_saved_loaded_and_leaves_scores_unchanged(
    small_frame: pd.DataFrame, tmp_path
) -> None:
    detector = VAEAnomalyDetector(**FAST_PARAMS, key_columns=("id",)).fit(small_frame)
    detector.save(tmp_path / "m")
    assert (tmp_path / "m" / PROFILE_NAME).is_file()
    listed = json.loads((tmp_path / "m" / FILES_NAME).read_text())
    assert PROFILE_NAME in json.dumps(listed)  # covered by the model's file list
    loaded = VAEAnomalyDetector.load(tmp_path / "m")
    assert loaded.training_profile_ == detector.training_profile_
    np.testing.assert_array_equal(
        loaded.decision_function(small_frame), detector.decision_function(small_frame)
    )
    loaded.save(tmp_path / "again")  # a loaded model saves its profile again
    assert VAEAnomalyDetector.load(tmp_path / "again").training_profile_ == loaded.training_profile_


def test_models_saved_before_the_profile_load_without_one(small_frame, tmp_path) -> None:
    detector = VAEAnomalyDetector(**FAST_PARAMS, key_columns=("id",)).fit(small_frame)
    detector.training_profile_ = None  # as a model saved before profiles existed
    detector.save(tmp_path / "old")
    assert not (tmp_path / "old" / PROFILE_NAME).exists()
    old = VAEAnomalyDetector.load(tmp_path / "old")
    assert old.training_profile_ is None
    np.testing.assert_array_equal(
        old.decision_function(small_frame), detector.decision_function(small_frame)
    )


def test_a_profile_of_the_wrong_shape_is_a_model_file_error(small_frame, tmp_path) -> None:
    detector = VAEAnomalyDetector(**FAST_PARAMS, key_columns=("id",)).fit(small_frame)
    detector.training_profile_ = None
    detector.save(tmp_path / "m")
    # Written through the save path, so the file list covers it: only its shape is wrong.
    bad = {PROFILE_NAME: {"version": 1, "n_rows": 3, "columns": {"a": {"kind": "text"}}}}
    manifest, states = persistence.load_model(tmp_path / "m")
    persistence.save_model(tmp_path / "bad", manifest, [*states], extra_json=bad)
    with pytest.raises(ModelFileError, match=PROFILE_NAME):
        VAEAnomalyDetector.load(tmp_path / "bad")


def test_sensor_profile_is_saved_and_loaded(tmp_path) -> None:
    rng = np.random.default_rng(1)
    n = 150
    series = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="1s"),
            "a": np.sin(np.arange(n) / 5) + rng.normal(0, 0.05, n),
        }
    )
    params = {"max_epochs": 2, "hidden_sizes": (8,), "latent_dim": 2, "random_state": 0}
    detector = SensorVAEDetector(
        timestamp_column="ts", window_length=4, detector_params=params
    ).fit(series)
    detector.save(tmp_path / "s")
    assert (tmp_path / "s" / PROFILE_NAME).is_file()
    loaded = SensorVAEDetector.load(tmp_path / "s")
    assert loaded.training_profile_ == detector.training_profile_
    assert list(loaded.training_profile_.columns) == ["a"]
    np.testing.assert_array_equal(
        loaded.decision_function(series), detector.decision_function(series)
    )
