"""Feature contract: inference at fit time, validation at score time, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vae_core.errors import ColumnTypeError, EmptyInputError, SchemaError
from vae_core.schema import ColumnSpec, FeatureSchema, as_frame, infer_schema


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "when": pd.date_range("2024-01-01", periods=4, freq="D"),
            "duration": pd.to_timedelta([1, 2, 3, 4], unit="s"),
            "temp": [20.5, np.nan, 21.0, 19.5],
            "count": np.array([1, 2, 3, 4], dtype=np.int32),
            "ok": [True, False, True, True],
            "colour": ["red", "blue", None, "red"],
            "size": pd.Categorical(["S", "M", "L", "M"]),
        }
    )


def test_infer_kinds_keys_and_ignored_columns(frame):
    schema = infer_schema(frame, key_columns=["id"])
    assert schema.columns == (
        ColumnSpec("temp", "numeric", "float64"),
        ColumnSpec("count", "numeric", "int32"),
        ColumnSpec("ok", "categorical", "bool"),
        ColumnSpec("colour", "categorical", str(frame["colour"].dtype)),
        ColumnSpec("size", "categorical", "category"),
    )
    assert schema.feature_names == ["temp", "count", "ok", "colour", "size"]
    assert schema.key_columns == ("id",)
    assert schema.ignored_columns == ("when", "duration")
    assert not schema.from_array


def test_infer_without_keys_models_the_id_column(frame):
    schema = infer_schema(frame)
    assert schema.feature_names[0] == "id"
    assert schema.key_columns == ()


def test_absent_key_column_is_named(frame):
    with pytest.raises(SchemaError, match="entity_id"):
        infer_schema(frame, key_columns=["entity_id"])


def test_empty_frame_raises():
    with pytest.raises(EmptyInputError, match="no rows"):
        infer_schema(pd.DataFrame({"a": pd.Series([], dtype=float)}))


def test_no_feature_left_raises(frame):
    with pytest.raises(EmptyInputError) as info:
        infer_schema(frame[["id", "when"]], key_columns=["id"])
    assert "when" in str(info.value)


def test_non_string_column_name_raises():
    with pytest.raises(SchemaError, match="column name 0"):
        infer_schema(pd.DataFrame(np.zeros((3, 2))))


def test_validate_accepts_extra_columns_missing_values_and_numeric_text(frame):
    schema = infer_schema(frame, key_columns=["id"])
    scoring = frame.drop(columns=["id", "when"]).assign(extra=1.0)
    scoring["temp"] = [np.nan, np.nan, np.nan, np.nan]
    scoring["count"] = pd.Series(["1", "2.5", None, "7"], dtype=object)  # text of numbers
    scoring["ok"] = [1, 0, 1, 1]  # not checked: categoricals take any value
    schema.validate(scoring)


def test_validate_accepts_booleans_in_a_numeric_column(frame):
    schema = infer_schema(frame)
    schema.validate(frame.assign(temp=[True, False, True, False]))


def test_validate_names_missing_columns_and_source(frame):
    schema = infer_schema(frame, key_columns=["id"])
    with pytest.raises(SchemaError) as info:
        schema.validate(frame.drop(columns=["temp", "size"]), source="day-7.parquet")
    message = str(info.value)
    assert "temp" in message and "size" in message
    assert "day-7.parquet" in message
    assert not isinstance(info.value, ColumnTypeError)


def test_validate_names_column_value_and_row_of_a_type_error(frame):
    schema = infer_schema(frame)
    bad = frame.copy()
    bad["temp"] = pd.Series([20.0, 21.0, "warm-ish", 19.0], dtype=object)
    with pytest.raises(ColumnTypeError) as info:
        schema.validate(bad, source="batch-3")
    message = str(info.value)
    assert "'temp'" in message
    assert "'warm-ish'" in message
    assert "row 2" in message
    assert "batch-3" in message


def test_json_round_trip(frame):
    schema = infer_schema(frame, key_columns=["id"])
    restored = FeatureSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert restored == schema
    assert restored.feature_names == schema.feature_names


def test_json_round_trip_of_array_schema():
    frame, from_array = as_frame(np.zeros((3, 2)))
    schema = infer_schema(frame, from_array=from_array)
    restored = FeatureSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert restored == schema
    assert restored.from_array


def test_as_frame_names_array_columns():
    frame, from_array = as_frame(np.arange(6.0).reshape(3, 2))
    assert from_array
    assert list(frame.columns) == ["x0", "x1"]
    np.testing.assert_array_equal(frame.to_numpy(), np.arange(6.0).reshape(3, 2))


def test_as_frame_passes_a_frame_through(frame):
    same, from_array = as_frame(frame)
    assert same is frame
    assert not from_array


def test_as_frame_rejects_series_and_1d_arrays():
    with pytest.raises(SchemaError, match="Series"):
        as_frame(pd.Series([1.0, 2.0]))
    with pytest.raises(SchemaError, match=r"\(5,\)"):
        as_frame(np.zeros(5))
