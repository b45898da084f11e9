"""Row validation: the one rule for text spellings of missing and infinite numbers."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.pipeline.row_validation import (
    refuse_unreadable_values,
    split_training_rows,
    split_valid_rows,
)
from vae_core.errors import ColumnTypeError, SchemaError
from vae_core.schema import ColumnSpec, FeatureSchema

SCHEMA = FeatureSchema((ColumnSpec("x", "numeric", "float64"),), ("id",))
SPELLINGS = ["nan", "NaN", "inf", "-inf", "Infinity", ""]


def text_batch(values: list[str | None]) -> pd.DataFrame:
    return pd.DataFrame({"id": range(len(values)), "x": pd.array(values, dtype="string")})


def test_text_spellings_of_non_finite_numbers_are_quarantined_with_their_reason() -> None:
    batch = text_batch(["1.5", *SPELLINGS, None])
    valid, quarantined = split_valid_rows(batch, SCHEMA, "in.parquet")
    assert valid["x"].tolist()[0] == 1.5 and pd.isna(valid["x"].tolist()[1])  # a real null
    assert len(valid) == 2 and len(quarantined) == len(SPELLINGS)
    reasons = dict(zip(quarantined["x"].tolist(), quarantined["reason"], strict=True))
    assert reasons["nan"] == "column 'x' value 'nan' is not a number"
    assert reasons["inf"] == "column 'x' value 'inf' is not a finite number"
    assert reasons["-inf"] == "column 'x' value '-inf' is not a finite number"
    assert reasons[""] == "column 'x' value '' is not a number"


def test_real_non_finite_floats_are_data() -> None:
    batch = pd.DataFrame({"id": [1, 2], "x": [float("nan"), float("inf")]})
    valid, quarantined = split_valid_rows(batch, SCHEMA, "in.parquet")
    assert len(valid) == 2 and quarantined.empty


def test_fail_names_the_first_non_finite_text() -> None:
    with pytest.raises(ColumnTypeError, match=r"row 1 holds 'inf', not a finite number"):
        split_valid_rows(text_batch(["2", "inf"]), SCHEMA, "in.parquet", "fail")


def test_without_a_quarantine_text_infinity_stops_like_text_nan() -> None:
    with pytest.raises(ColumnTypeError, match=r"in\.parquet: column 'x' .* row 1 holds '-inf'"):
        refuse_unreadable_values(text_batch(["2", "-inf"]), SCHEMA, "in.parquet")
    with pytest.raises(ColumnTypeError, match=r"row 2 holds 'nan' \(dtype string\)"):
        refuse_unreadable_values(text_batch(["2", None, "nan"]), SCHEMA, "in.parquet")
    refuse_unreadable_values(text_batch(["2", None]), SCHEMA, "in.parquet")


def test_without_a_quarantine_errors_quote_an_excerpt() -> None:
    with pytest.raises(ColumnTypeError) as caught:
        refuse_unreadable_values(text_batch(["z" * 100_000]), SCHEMA, "in.parquet")
    assert len(str(caught.value)) < 300
    schema = FeatureSchema((ColumnSpec("x", "numeric", "float64"),), (), ("ts",))
    batch = pd.DataFrame({"ts": ["2024-01-01", "t" * 100_000], "x": [1.0, 2.0]})
    with pytest.raises(SchemaError, match=r"timestamp column 'ts' row 1 holds 'ttt") as caught:
        refuse_unreadable_values(batch, schema, "in.parquet", "ts")
    assert len(str(caught.value)) < 300


def test_a_long_bad_value_is_quoted_as_a_short_excerpt() -> None:
    _, quarantined = split_valid_rows(text_batch(["1", "y" * 100_000]), SCHEMA, "in.parquet")
    (reason,) = quarantined["reason"]
    assert len(reason) < 200 and reason.endswith("yyy... is not a number")


def test_training_applies_the_same_rule() -> None:
    frame = pd.DataFrame({"id": range(20), "x": [str(v) for v in range(18)] + ["inf", "nan"]})
    kept, quarantined = split_training_rows(frame, ("id",), "t.parquet")
    assert len(kept) == 18 and kept["x"].dtype == "float64"
    assert sorted(quarantined["reason"]) == [
        "column 'x' value 'inf' is not a finite number",
        "column 'x' value 'nan' is not a number",
    ]


def test_an_ordered_stream_quarantines_rows_whose_timestamp_is_unreadable() -> None:
    schema = FeatureSchema((ColumnSpec("x", "numeric", "float64"),), (), ("ts",))
    batch = pd.DataFrame({"ts": ["2024-01-01T00:00:00", "garbage", None], "x": [1.0, 2.0, 3.0]})
    valid, quarantined = split_valid_rows(batch, schema, "s.parquet", time_column="ts")
    assert len(valid) == 2
    assert quarantined["reason"].tolist() == [
        "timestamp column 'ts' value 'garbage' is not a timestamp (ISO 8601) or a number"
    ]
    valid, quarantined = split_valid_rows(batch, schema, "s.parquet")  # tabular: carried
    assert len(valid) == 3 and quarantined.empty


def test_training_refuses_a_nested_column() -> None:
    frame = pd.DataFrame({"id": [1, 2], "x": [{"a": 1}, {"a": 2}]})
    with pytest.raises(ColumnTypeError, match=r"t\.parquet: column 'x' holds struct values"):
        split_training_rows(frame, ("id",), "t.parquet")
