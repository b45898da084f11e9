"""What kind of values a column holds, told from its dtype, and the checks built on it.

A Parquet column has one type, so a batch's pandas dtype says what every value of a column
is: numbers, booleans, text, timestamps, durations, or nested values (structs, lists, maps,
which pandas holds as Python objects). The model was trained on the kinds its schema
records; a column that arrives as another kind is scored all the same (the encoders coerce
it), which is how a timestamp ends up read as a number of nanoseconds and every row
flagged. These checks say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from flows.config.quoting import excerpt
from vae_core.errors import ColumnTypeError
from vae_core.schema import ColumnSpec

#: What a key column may hold, for the error that refuses anything else.
KEY_TYPES = "text, integers, numbers, booleans, dates or timestamps"

_FAMILY_WORDS = {
    "number": "numbers",
    "boolean": "booleans",
    "text": "text",
    "timestamp": "timestamps",
    "duration": "durations",
    "nested": "nested values",
}


def dtype_family(dtype: Any) -> str:
    """numbers, booleans, text, timestamps, durations or other (objects: text or nested)."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype) or isinstance(dtype, pd.PeriodDtype):
        return "timestamp"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "duration"
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        return "text"  # object columns included: nested values are told by their values
    return "other"


def _first_value(series: pd.Series) -> Any:
    """The first value that is not missing (None when there is none)."""
    position = series.first_valid_index()
    return None if position is None else series.loc[position]


def nested_kind(series: pd.Series) -> str | None:
    """'struct' or 'list or map' when the column holds nested values; None otherwise.

    Arrow hands pandas a struct as a dict, a list or a map as an array of values or pairs.
    A Parquet column has one type, so its first value stands for all of them.
    """
    if not pd.api.types.is_object_dtype(series.dtype):
        return None
    value = _first_value(series)
    if isinstance(value, dict):
        return "struct"
    if isinstance(value, list | tuple | set | np.ndarray):
        return "list or map"
    return None


def column_family(series: pd.Series) -> str:
    """The kind of values ``series`` holds, nested values told apart from text."""
    return "nested" if nested_kind(series) else dtype_family(series.dtype)


def trained_family(spec: ColumnSpec) -> str:
    """The kind of values a feature column held in training (from its recorded dtype)."""
    if spec.kind == "numeric":
        return "number"
    return "boolean" if spec.dtype in ("bool", "boolean") else "text"


def describe(family: str, dtype: Any) -> str:
    return f"{_FAMILY_WORDS.get(family, family)} ({dtype})"


def refuse_nested(batch: pd.DataFrame, columns: Iterable[str], keys: Iterable[str], source: str):
    """Stop at a model column or key column holding structs, lists or maps.

    Left alone they end in an unhashable-type or Arrow cast error deep inside scoring or
    writing, which names neither the file nor the column.
    """
    key_set = set(keys)
    dtypes = batch.dtypes
    for name in columns:
        if name not in batch.columns or not pd.api.types.is_object_dtype(dtypes[name]):
            continue
        kind = nested_kind(batch[name])
        if kind is None:
            continue
        value = excerpt(_first_value(batch[name]))
        if name in key_set:
            raise ColumnTypeError(
                f"{source}: key column '{name}' holds {kind} values (e.g. {value}); a key "
                f"may hold {KEY_TYPES}. Flatten the key into such a column, or choose "
                "another key column."
            )
        raise ColumnTypeError(
            f"{source}: column '{name}' holds {kind} values (e.g. {value}); the model reads "
            "numbers, text, booleans and timestamps. Flatten the column into plain columns, "
            "or drop it from the data."
        )


def refuse_nested_columns(frame: pd.DataFrame, keys: Iterable[str], source: str) -> None:
    """``refuse_nested`` over every column of a training frame."""
    refuse_nested(frame, list(frame.columns), keys, source)


def drift_of(spec: ColumnSpec, series: pd.Series) -> tuple[str, str] | None:
    """(type in training, type here) when ``series`` holds another kind than in training.

    Text in a numeric column is not drift: its numbers are parsed and the rest is dealt
    with row by row (quarantine, or an error). A column with no value says nothing.
    """
    before = trained_family(spec)
    now = dtype_family(series.dtype)
    if now == before or (before == "number" and now == "text"):
        return None
    if now == "text" and nested_kind(series):
        now = "nested"
    if not series.notna().any():
        return None
    return describe(before, spec.dtype), describe(now, series.dtype)


def unparseable_timestamps(series: pd.Series) -> tuple[int, Any]:
    """For a timestamp column that arrived as text: values that are no timestamp, and the
    first of them."""
    present = series.notna()
    parsed = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    bad = (parsed.isna() & present).to_numpy()
    if not bad.any():
        return 0, None
    return int(bad.sum()), series.iloc[int(np.flatnonzero(bad)[0])]


def unparseable_timestamp_mask(series: pd.Series) -> np.ndarray:
    """Rows whose text timestamp cannot be read (the sensor model's rule: ISO 8601)."""
    if dtype_family(series.dtype) in ("timestamp", "number"):
        return np.zeros(len(series), dtype=bool)
    parsed = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    return (parsed.isna() & series.notna()).to_numpy()
