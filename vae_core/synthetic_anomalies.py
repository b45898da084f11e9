"""Synthetic anomalies: clean rows made abnormal in known ways, for a label-free check.

A promotion gate without labels still needs to know whether a model *detects* anything:
rows held out from training are copied and broken, and a model that scores the broken
copies above the clean rows (ROC AUC near 1) still notices the anomalies the product is
for. Four kinds, each a copy of one clean row with one thing changed:

- ``far_out``: one numeric column pushed far outside its range (beyond the 99% quantile by
  ``FAR_OUT_SPANS`` times the 1-99% span, or below the 1% quantile as far);
- ``swapped_columns``: half of the feature columns taken from another random row, so the
  row is made of two rows whose columns no longer belong together;
- ``broken_correlation``: one numeric column given the value of the row at the mirrored
  rank (the 90% row's value for a 10% row), inside the column's range but against every
  column it moved with;
- ``rare_category``: one categorical (not boolean) column set to the rarest level seen in
  the rows (a level of its own, ``RARE_LEVEL``, when every level is about equally common).

Only the kinds the columns allow are made (no numeric column: no ``far_out``). The same
rows, kinds and ``seed`` give the same anomalies. Pure numpy/pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ANOMALY_KINDS: tuple[str, ...] = (
    "far_out",
    "swapped_columns",
    "broken_correlation",
    "rare_category",
)
#: How far past the 1-99% range a ``far_out`` value lies, in multiples of that range.
FAR_OUT_SPANS = 10.0
#: A level of our own, for columns without a clearly rare level.
RARE_LEVEL = "__synthetic_rare__"
#: The rarest level is used only when it is at most this share of the rows.
RARE_SHARE = 0.05


@dataclass(frozen=True)
class SyntheticAnomalies:
    """Broken copies of clean rows: ``rows`` (same columns), ``kinds``, ``sources`` (the
    position of the clean row each copy was made from) and ``columns`` (the one column
    changed; empty for ``swapped_columns``, which changes several)."""

    rows: pd.DataFrame
    kinds: np.ndarray
    sources: np.ndarray
    columns: np.ndarray


def inject_anomalies(
    clean: pd.DataFrame,
    kinds: Mapping[str, str],
    n_anomalies: int,
    seed: int = 0,
    anomaly_kinds: Sequence[str] = ANOMALY_KINDS,
) -> SyntheticAnomalies:
    """``n_anomalies`` broken copies of rows of ``clean``, the kinds taken in turn.

    ``kinds`` maps each feature column to ``numeric``, ``categorical`` or ``boolean``
    (``vae_core.profile`` kinds); other columns (keys, timestamps) are copied unchanged.
    """
    unknown = sorted(set(anomaly_kinds) - set(ANOMALY_KINDS))
    if unknown:
        raise ValueError(f"unknown anomaly kinds {unknown}; use some of {ANOMALY_KINDS}")
    if len(clean) < 2:
        raise ValueError(f"{len(clean)} clean rows; at least 2 are needed to make anomalies")
    numeric = [c for c, k in kinds.items() if k == "numeric" and _has_spread(clean[c])]
    # Booleans have no rare level to take, and a third value would not be a boolean.
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    features = [c for c in kinds if c in clean.columns]
    usable = [k for k in anomaly_kinds if _possible(k, numeric, categorical, features)]
    if not usable:
        raise ValueError("no anomaly kind can be made from these columns")
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, len(clean), size=n_anomalies)
    out = clean.iloc[sources].reset_index(drop=True).copy()
    for column in categorical:
        # Object columns take a level of our own; categoricals would refuse it.
        if isinstance(out[column].dtype, pd.CategoricalDtype):
            out[column] = out[column].astype(object)
    made = np.array([usable[i % len(usable)] for i in range(n_anomalies)], dtype=object)
    changed = np.full(n_anomalies, "", dtype=object)
    for kind in usable:
        rows = np.flatnonzero(made == kind)
        if len(rows):
            changed[rows] = _MAKERS[kind](out, clean, rows, rng, numeric, categorical, features)
    return SyntheticAnomalies(out, made, sources, changed)


def _possible(kind: str, numeric: list[str], categorical: list[str], features: list[str]) -> bool:
    if kind in ("far_out", "broken_correlation"):
        return bool(numeric)
    if kind == "rare_category":
        return bool(categorical)
    return len(features) >= 2


def _has_spread(series: pd.Series) -> bool:
    values = _floats(series)
    finite = values[np.isfinite(values)]
    return len(finite) > 1 and float(np.ptp(finite)) > 0


def _floats(series: pd.Series) -> np.ndarray:
    numbers = pd.to_numeric(series, errors="coerce")
    return pd.Series(numbers).astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _far_out(out, clean, rows, rng, numeric, categorical, features) -> np.ndarray:
    chosen = rng.choice(numeric, size=len(rows))
    for row, column in zip(rows, chosen, strict=True):
        values = _floats(clean[column])
        low, high = np.nanquantile(values[np.isfinite(values)], [0.01, 0.99])
        span = max(high - low, abs(high), 1e-6)
        above = rng.uniform() < 0.5 or low - FAR_OUT_SPANS * span < 0 <= low
        value = high + FAR_OUT_SPANS * span if above else low - FAR_OUT_SPANS * span
        out.loc[row, column] = _as_column_value(out[column], value)
    return chosen


def _swapped_columns(out, clean, rows, rng, numeric, categorical, features) -> np.ndarray:
    half = max(1, len(features) // 2)
    for row in rows:
        donor = int(rng.integers(0, len(clean)))
        taken = list(rng.choice(features, size=half, replace=False))
        for column in taken:
            out.loc[row, column] = clean[column].iloc[donor]
    return np.full(len(rows), "", dtype=object)


def _broken_correlation(out, clean, rows, rng, numeric, categorical, features) -> np.ndarray:
    chosen = rng.choice(numeric, size=len(rows))
    for row, column in zip(rows, chosen, strict=True):
        values = _floats(clean[column])
        present = np.sort(values[np.isfinite(values)])
        current = _floats(out[column].iloc[[row]])[0]
        rank = np.searchsorted(present, current) / len(present) if np.isfinite(current) else 0.5
        mirrored = present[int(np.clip(round((1.0 - rank) * (len(present) - 1)), 0, None))]
        if mirrored == current:  # the median row: take the farther end instead
            mirrored = present[0] if current - present[0] > present[-1] - current else present[-1]
        out.loc[row, column] = _as_column_value(out[column], mirrored)
    return chosen


def _rare_category(out, clean, rows, rng, numeric, categorical, features) -> np.ndarray:
    chosen = rng.choice(categorical, size=len(rows))
    for row, column in zip(rows, chosen, strict=True):
        out.loc[row, column] = _rare_level(clean[column], out[column].iloc[row])
    return chosen


def _rare_level(series: pd.Series, current: object) -> object:
    counts = series.dropna().astype(str).value_counts()
    if len(counts) >= 2 and counts.iloc[-1] <= RARE_SHARE * len(series):
        rarest = counts.index[-1]
        if str(current) != rarest:
            by_text = {str(v): v for v in series.dropna().unique()}
            return by_text[rarest]
    return RARE_LEVEL


def _as_column_value(column: pd.Series, value: float) -> object:
    """``value`` in the column's type: integer columns get a whole number."""
    if pd.api.types.is_integer_dtype(column):
        return int(np.clip(round(value), np.iinfo(np.int64).min // 2, np.iinfo(np.int64).max // 2))
    return float(value)


_MAKERS = {
    "far_out": _far_out,
    "swapped_columns": _swapped_columns,
    "broken_correlation": _broken_correlation,
    "rare_category": _rare_category,
}
