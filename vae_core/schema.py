"""The feature contract: which columns a model reads, of what kind, inferred at fit time.

A schema is inferred from the training frame, stored as JSON beside the weights and used at
scoring time to check that a frame can be scored (columns present, values of the right
type) before any tensor is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from vae_core.errors import ColumnTypeError, EmptyInputError, SchemaError

ColumnKind = Literal["numeric", "categorical"]

#: Column names given to the features of a 2-D array, which has none of its own.
ARRAY_COLUMN_PREFIX = "x"


@dataclass(frozen=True)
class ColumnSpec:
    """One feature column: its name, how it is modelled and the dtype seen in training."""

    name: str
    kind: ColumnKind
    dtype: str


@dataclass(frozen=True)
class FeatureSchema:
    """Feature columns in model order, plus the columns that are carried but not modelled."""

    columns: tuple[ColumnSpec, ...]
    key_columns: tuple[str, ...] = ()
    ignored_columns: tuple[str, ...] = field(default=())
    from_array: bool = False

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [asdict(c) for c in self.columns],
            "key_columns": list(self.key_columns),
            "ignored_columns": list(self.ignored_columns),
            "from_array": self.from_array,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(
            columns=tuple(ColumnSpec(**c) for c in data["columns"]),
            key_columns=tuple(data.get("key_columns", ())),
            ignored_columns=tuple(data.get("ignored_columns", ())),
            from_array=bool(data.get("from_array", False)),
        )

    def validate(self, frame: pd.DataFrame, source: str = "input") -> None:
        """Raise if ``frame`` lacks a feature column or holds values of the wrong type.

        Missing values are data, not errors; extra columns are allowed (and not modelled).
        """
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            raise SchemaError(
                f"{source}: column(s) {missing} required by the model are missing "
                f"(has {len(frame.columns)} columns: {list(frame.columns)[:20]}). "
                "Score data with the same feature columns the model was trained on."
            )
        # The dtypes first: taking each column out of a wide frame as a Series costs more
        # than checking it (200 columns: 3 ms a batch); only a text column needs its values.
        dtypes = frame.dtypes
        for spec in self.columns:
            if spec.kind == "numeric" and not pd.api.types.is_numeric_dtype(dtypes[spec.name]):
                check_numeric_column(frame[spec.name], spec.name, source)


def as_frame(X: Any) -> tuple[pd.DataFrame, bool]:
    """Return ``X`` as a DataFrame and whether it came from an array (named x0, x1, ...)."""
    if isinstance(X, pd.DataFrame):
        return X, False
    if isinstance(X, pd.Series):
        raise SchemaError("got a pandas Series; pass a DataFrame (one column per feature).")
    if is_sparse(X):
        raise SchemaError(
            f"got a sparse {type(X).__name__}; sparse input is not supported: pass "
            "X.toarray() or a DataFrame (missing values are modelled, not zeros)."
        )
    array = np.asarray(X)
    if array.ndim != 2:
        raise SchemaError(
            f"expected a 2-D array or a DataFrame, got an array of shape {array.shape}; "
            "reshape a single feature with X.reshape(-1, 1)."
        )
    names = [f"{ARRAY_COLUMN_PREFIX}{i}" for i in range(array.shape[1])]
    frame = pd.DataFrame(array, columns=names)
    if array.dtype == object:
        # A mixed-type array is dtype object throughout: give each column the type its
        # values have, so numbers stay numeric instead of becoming categories.
        frame = frame.infer_objects()
        for name in [c for c in frame.columns if frame[c].dtype == np.dtype(object)]:
            as_number = pd.to_numeric(frame[name], errors="coerce")
            if as_number.notna().sum() == frame[name].notna().sum():
                frame[name] = as_number
    return frame, True


def is_sparse(X: Any) -> bool:
    """Whether ``X`` is a scipy sparse matrix or array (without importing scipy for it)."""
    return type(X).__module__.startswith("scipy.sparse")


def is_numeric_dtype(series: pd.Series | np.dtype[Any] | pd.api.extensions.ExtensionDtype) -> bool:
    """Numbers, not booleans: of a column, or of its dtype (``frame.dtypes[name]``)."""
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def is_datetime_dtype(series: pd.Series) -> bool:
    return pd.api.types.is_datetime64_any_dtype(series) or isinstance(series.dtype, pd.PeriodDtype)


def check_numeric_column(series: pd.Series, name: str, source: str) -> None:
    """Raise ``ColumnTypeError`` naming the first value that is not a number."""
    if is_numeric_dtype(series):
        return
    if pd.api.types.is_bool_dtype(series):
        return  # booleans read as 0/1 where a numeric column is expected
    coerced = pd.to_numeric(series, errors="coerce")
    bad = coerced.isna() & series.notna()
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        value = series.iloc[position]
        raise ColumnTypeError(
            f"{source}: column '{name}' must be numeric but row {position} holds "
            f"{value!r} (dtype {series.dtype}). Fix or drop the value, or cast the column "
            "to a number before scoring."
        )


def normalise_key_columns(key_columns: str | Sequence[str] | None) -> tuple[str, ...]:
    """A single column name is one key, not a sequence of one-letter names."""
    if key_columns is None:
        return ()
    if isinstance(key_columns, str):
        return (key_columns,)
    return tuple(key_columns)


def infer_schema(
    frame: pd.DataFrame,
    key_columns: Sequence[str] = (),
    from_array: bool = False,
) -> FeatureSchema:
    """Infer the feature contract of a training frame.

    Numbers are numeric features; booleans, strings and pandas categoricals are categorical.
    Key columns and datetime columns are carried, never modelled.
    """
    if len(frame) == 0:
        raise EmptyInputError("the training data has no rows; pass at least one batch of data.")
    key_columns = normalise_key_columns(key_columns)
    absent = [k for k in key_columns if k not in frame.columns]
    if absent:
        raise SchemaError(
            f"key column(s) {absent} are not in the data (columns: {list(frame.columns)[:20]})."
        )
    specs: list[ColumnSpec] = []
    ignored: list[str] = []
    for name in frame.columns:
        series = frame[name]
        if name in key_columns:
            continue
        if is_datetime_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
            ignored.append(str(name))
            continue
        if not isinstance(name, str):
            raise SchemaError(
                f"column name {name!r} is not a string; give every column a string name."
            )
        if is_numeric_dtype(series):
            specs.append(ColumnSpec(name, "numeric", str(series.dtype)))
        else:
            specs.append(ColumnSpec(name, "categorical", str(series.dtype)))
    if not specs:
        raise EmptyInputError(
            f"no feature columns left after excluding keys {list(key_columns)} and "
            f"datetime columns {ignored}; the detector needs at least one feature."
        )
    return FeatureSchema(tuple(specs), tuple(key_columns), tuple(ignored), from_array)
