"""Row-level validation at scoring time: keep every good row, quarantine the rest with a reason.

File-level problems (a feature column missing altogether, an unreadable file) are errors
that stop the run; row-level problems (a key that is null, a value in a numeric column that
is not a number) send that row to quarantine so that one bad record does not cost the batch.
NaN, +-inf and extreme magnitudes are data: the model scores them (as missing, or as very
far out), they are not quarantined.

Text spellings of missing and infinite values follow one rule: in a numeric column that
arrived as text, only finite numbers are numbers. 'nan', 'NaN', 'inf', '-inf', 'Infinity'
and empty text are values that are not a (finite) number, quarantined with their reason
like any other text (``score-file`` and ``numeric_errors=fail`` stop at the first one); a
real null in the column is a missing value, as everywhere. A text export that meant a
missing value should write a null.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from flows.pipeline.column_types import excerpt, refuse_nested_columns, unparseable_timestamp_mask
from vae_core.errors import ColumnTypeError, SchemaError
from vae_core.schema import FeatureSchema, is_numeric_dtype

REASON_COLUMN = "reason"


def _first_reason(reasons: pd.Series, mask: np.ndarray, text: pd.Series | str) -> pd.Series:
    """Set ``text`` where ``mask`` holds and no earlier reason was recorded."""
    fresh = mask & reasons.isna().to_numpy()
    if isinstance(text, str):
        reasons[fresh] = text
    else:
        reasons[fresh] = text[fresh]
    return reasons


Problems = list[tuple[np.ndarray, "pd.Series | str"]]


def split_valid_rows(
    batch: pd.DataFrame,
    schema: FeatureSchema,
    source: str,
    numeric_errors: Literal["quarantine", "fail"] = "quarantine",
    time_column: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (rows to score, quarantined rows as text with a ``reason`` column).

    ``time_column``: the column that orders an ordered stream (sensor series); a row whose
    timestamp is text that cannot be read is quarantined, since its place in the series
    is unknown.
    """
    missing = [c for c in (*schema.feature_names, *schema.key_columns) if c not in batch.columns]
    if missing:
        raise SchemaError(
            f"{source}: column(s) {missing} required by the model are missing; score data "
            "with the columns the model was trained on."
        )
    batch = batch.reset_index(drop=True)
    # Reasons in the order they are recorded (the first one a row gets is its reason); the
    # per-row reason column is only built when some row is bad, which is rare.
    problems = _null_keys(batch, schema)
    if time_column is not None and time_column in batch.columns:
        _unreadable_times(batch[time_column], time_column, problems)
    coerced = _numbers_in_text_columns(batch, schema, source, numeric_errors, problems)
    if not problems and not coerced:
        # The common case: every row is good as it is; no copy of the batch.
        return batch, pd.DataFrame(columns=[*batch.columns, REASON_COLUMN])
    return _split(batch, problems, coerced)


def _null_keys(batch: pd.DataFrame, schema: FeatureSchema) -> Problems:
    problems: Problems = []
    for key in schema.key_columns:
        null = batch[key].isna().to_numpy()
        if null.any():
            problems.append((null, f"key column '{key}' is null"))
    return problems


def _unreadable_times(values: pd.Series, name: str, problems: Problems) -> None:
    bad = unparseable_timestamp_mask(values)
    if bad.any():
        text = "timestamp column '" + name + "' value " + values.astype(str).map(excerpt)
        problems.append((bad, text + " is not a timestamp (ISO 8601) or a number"))


def _not_finite(column: pd.Series, numbers: pd.Series) -> np.ndarray:
    """Values present as text that are not a finite number ('twelve', 'nan', 'inf', '')."""
    finite = np.isfinite(numbers.to_numpy(dtype="float64", na_value=np.nan))
    return column.notna().to_numpy() & ~finite


def _reason_text(name: str, column: pd.Series, numbers: pd.Series) -> pd.Series:
    """Per row: why the value is refused, quoting at most a short excerpt of it."""
    infinite = np.isinf(numbers.to_numpy(dtype="float64", na_value=np.nan))
    what = np.where(infinite, " is not a finite number", " is not a number")
    return "column '" + name + "' value " + column.astype(str).map(excerpt) + what


def refuse_unreadable_values(
    batch: pd.DataFrame, schema: FeatureSchema, source: str, time_column: str | None = None
) -> None:
    """Without a quarantine (``score-file``): stop at the first value no row could be
    scored with, quoting a short excerpt of it.

    Text that is no finite number in a numeric column ('twelve', 'nan', and 'inf' by the
    one rule for text spellings), and text that is no timestamp in an ordered stream's
    ``time_column``. The detector refuses both too, but quotes the whole value.
    """
    dtypes = batch.dtypes
    for spec in schema.columns:
        if spec.kind != "numeric" or spec.name not in batch.columns:
            continue
        if pd.api.types.is_numeric_dtype(dtypes[spec.name]):
            continue
        column = batch[spec.name]
        numbers = pd.to_numeric(column, errors="coerce")
        bad = _not_finite(column, numbers)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            what = (
                ", text for a number that is not finite. Write finite numbers, or a null for a "
                "missing value."
                if np.isinf(numbers.to_numpy(dtype="float64", na_value=np.nan)[row])
                else f" (dtype {column.dtype}). Fix or drop the value, or cast the column to a "
                "number before scoring."
            )
            raise ColumnTypeError(
                f"{source}: column '{spec.name}' must be numeric but row {row} holds "
                f"{excerpt(column.iloc[row])}{what}"
            )
    if time_column is not None and time_column in batch.columns:
        bad = unparseable_timestamp_mask(batch[time_column])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise SchemaError(
                f"{source}: timestamp column '{time_column}' row {row} holds "
                f"{excerpt(batch[time_column].iloc[row])}, which is not a timestamp "
                "(ISO 8601) or a number."
            )


def _numbers_in_text_columns(
    batch: pd.DataFrame,
    schema: FeatureSchema,
    source: str,
    numeric_errors: Literal["quarantine", "fail"],
    problems: Problems,
) -> dict[str, pd.Series]:
    """Numeric columns that arrived as text, parsed; a value that is no number is a problem."""
    coerced: dict[str, pd.Series] = {}
    # Numbers and booleans pass on their dtype alone; taking every column of a wide batch
    # out as a Series cost more than the checks.
    dtypes = batch.dtypes
    for spec in schema.columns:
        if spec.kind != "numeric" or pd.api.types.is_numeric_dtype(dtypes[spec.name]):
            continue
        column = batch[spec.name]
        numbers = pd.to_numeric(column, errors="coerce")
        bad = _not_finite(column, numbers)
        if bad.any():
            if numeric_errors == "fail":
                row = int(np.flatnonzero(bad)[0])
                raise ColumnTypeError(
                    f"{source}: column '{spec.name}' row {row} holds "
                    f"{excerpt(column.iloc[row])}, not a finite number "
                    "(score.numeric_errors=fail; set it to quarantine to keep the other rows)."
                )
            problems.append((bad, _reason_text(spec.name, column, numbers)))
        coerced[spec.name] = numbers
    return coerced


def _split(
    batch: pd.DataFrame, problems: Problems, coerced: dict[str, pd.Series]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    reasons = pd.Series([None] * len(batch), dtype=object)
    for mask, text in problems:
        _first_reason(reasons, mask, text)
    bad_rows = reasons.notna().to_numpy()
    valid = batch.loc[~bad_rows].copy()
    for name, numbers in coerced.items():
        valid[name] = numbers[~bad_rows].astype("float64")
    # Text keeps one schema for the quarantine file whatever the bad values were.
    quarantined = batch.loc[bad_rows].astype("string")
    quarantined[REASON_COLUMN] = reasons[bad_rows].to_numpy()
    return valid, quarantined


#: At training time a text column is taken for a numeric one holding a few bad values when
#: at least this share of its non-missing values parse as numbers (and some do not). A
#: column of text that all parses (zip codes, say) is left alone: it is categorical.
NUMERIC_TEXT_SHARE = 0.9


def numeric_columns_with_text(
    frame: pd.DataFrame, skip: tuple[str, ...] = ()
) -> dict[str, pd.Series]:
    """Text columns that are numbers except for some values: name -> the parsed numbers.

    A Parquet column has one type, so "strings in a numeric column" arrive as a text
    column in which nearly everything is a number. Modelled as categories, each amount
    would become a level of its own; the model would learn nothing from the column.
    """
    found: dict[str, pd.Series] = {}
    for name in frame.columns:
        column = frame[name]
        if name in skip or is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            continue
        if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
            continue
        present = int(column.notna().sum())
        if present == 0:
            continue
        numbers = pd.to_numeric(column, errors="coerce")
        parsed = present - int(_not_finite(column, numbers).sum())  # the one text rule
        if parsed < present and parsed >= NUMERIC_TEXT_SHARE * present:
            found[str(name)] = numbers
    return found


def split_training_rows(
    frame: pd.DataFrame,
    key_columns: tuple[str, ...],
    source: str,
    numeric_errors: Literal["quarantine", "fail"] = "quarantine",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (rows to train on, quarantined rows as text with a ``reason`` column).

    The training-time counterpart of ``split_valid_rows``: in a column that is numbers
    except for some text, the text rows are quarantined (or, with ``fail``, stop the run
    naming column, row and value) and the column is trained on as a number.
    """
    refuse_nested_columns(frame, key_columns, source)
    frame = frame.reset_index(drop=True)
    reasons = pd.Series([None] * len(frame), dtype=object)
    columns = numeric_columns_with_text(frame, key_columns)
    for name, numbers in columns.items():
        column = frame[name]
        bad = _not_finite(column, numbers)
        if numeric_errors == "fail":
            row = int(np.flatnonzero(bad)[0])
            raise ColumnTypeError(
                f"{source}: column '{name}' holds numbers, but row {row} holds "
                f"{excerpt(column.iloc[row])} ({int(bad.sum())} such row(s)). Fix the "
                "values, or set numeric_errors to quarantine to train on the other rows."
            )
        _first_reason(reasons, bad, _reason_text(name, column, numbers))
    bad_rows = reasons.notna().to_numpy()
    kept = frame.loc[~bad_rows].copy()
    for name, numbers in columns.items():
        kept[name] = numbers[~bad_rows].astype("float64")
    quarantined = frame.loc[bad_rows].astype("string")
    quarantined[REASON_COLUMN] = reasons[bad_rows].to_numpy()
    return kept.reset_index(drop=True), quarantined
