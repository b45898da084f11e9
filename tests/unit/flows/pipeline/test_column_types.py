"""Column kinds from dtypes: type drift, nested values, text that is no timestamp."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flows.pipeline.column_types import (
    drift_of,
    excerpt,
    nested_kind,
    refuse_nested,
    unparseable_timestamps,
)
from vae_core.errors import ColumnTypeError
from vae_core.schema import ColumnSpec

AMOUNT = ColumnSpec("amount", "numeric", "float64")
FLAG = ColumnSpec("flag", "categorical", "bool")
CHANNEL = ColumnSpec("channel", "categorical", "str")


@pytest.mark.parametrize(
    "spec, values, before, now",
    [
        (AMOUNT, pd.to_datetime(["2024-01-01", "2024-01-02"]), "numbers", "timestamps"),
        (FLAG, [0, 1], "booleans", "numbers"),
        (CHANNEL, [3, 4], "text", "numbers"),
        (AMOUNT, [True, False], "numbers", "booleans"),
    ],
)
def test_another_kind_of_value_than_in_training_is_drift(spec, values, before, now) -> None:
    drift = drift_of(spec, pd.Series(values))
    assert drift is not None
    assert drift[0].startswith(before) and spec.dtype in drift[0]
    assert drift[1].startswith(now)


@pytest.mark.parametrize(
    "spec, series",
    [
        (AMOUNT, pd.Series([1, 2], dtype="int64")),  # another width of number
        (AMOUNT, pd.Series(["1.5", "x"])),  # text in a numeric column: parsed row by row
        (FLAG, pd.Series([None, None], dtype=object)),  # no value at all says nothing
        (CHANNEL, pd.Series(["a", "b"], dtype="category")),
        (CHANNEL, pd.Series(["a", None], dtype=object)),
    ],
)
def test_the_same_kind_or_no_value_is_no_drift(spec, series) -> None:
    assert drift_of(spec, series) is None


def nested_frames() -> dict[str, pd.DataFrame]:
    table = pa.table(
        {
            "struct": pa.array([{"a": 1}, None]),
            "list": pa.array([[1, 2], None]),
            "map": pa.array([[("k", 1)], None], type=pa.map_(pa.string(), pa.int64())),
            "text": pa.array(["x", None]),
        }
    )
    return table.to_pandas()


def test_structs_lists_and_maps_are_told_from_text() -> None:
    frame = nested_frames()
    assert nested_kind(frame["struct"]) == "struct"
    assert nested_kind(frame["list"]) == nested_kind(frame["map"]) == "list or map"
    assert nested_kind(frame["text"]) is None


def test_a_nested_key_names_the_key_and_the_types_a_key_may_have() -> None:
    frame = nested_frames()
    with pytest.raises(ColumnTypeError, match=r"in\.parquet: key column 'struct' holds struct"):
        refuse_nested(frame, ["struct"], ["struct"], "in.parquet")
    with pytest.raises(ColumnTypeError, match=r"column 'map' holds list or map values"):
        refuse_nested(frame, ["text", "map"], [], "in.parquet")
    refuse_nested(frame, ["text"], [], "in.parquet")  # text passes


def test_text_that_is_no_timestamp_is_counted() -> None:
    series = pd.Series(["2024-01-01T10:00:00", "garbage", None, "2024-01-02", "soon"])
    assert unparseable_timestamps(series) == (2, "garbage")
    assert unparseable_timestamps(pd.Series(["2024-01-01", None])) == (0, None)


def test_an_excerpt_is_short_whatever_the_value() -> None:
    assert excerpt("twelve") == "'twelve'"
    long = excerpt("x" * 10_000)
    assert len(long) == 80 and long.endswith("...")
    assert excerpt(np.float64(1.5)) == repr(np.float64(1.5))
