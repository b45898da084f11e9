"""The training profile: what each feature column of the training data looked like.

A ``DataProfile`` is computed at fit time from the training frame and saved beside the
model as ``profile.json``. It lets later jobs compare new data with the data a model was
trained on (a retraining's data gate, the drift section of the report) without keeping the
training data itself. Pure numpy/pandas; no figure draws random numbers.

Per column:

- ``kind``: ``numeric``, ``categorical`` or ``boolean``;
- ``missing_share``: share of rows that are null (NaN, None, NA);
- ``non_finite_share``: share of rows that are +-inf (numeric; 0 otherwise);
- ``quantiles``: the 1, 5, 25, 50, 75, 95 and 99% quantiles of the finite values, keyed
  ``"0.01"`` ... ``"0.99"`` (numeric with at least one finite value; null otherwise);
- ``bin_edges`` / ``bin_shares``: 10 quantile bins over the finite values (edges that tie
  are merged, so a column with few distinct values has fewer bins), for the population
  stability index, see ``ColumnProfile.shares_of`` and ``psi``;
- ``levels`` / ``other_count``: the 100 most frequent levels with their counts, and the
  count of all other non-null values (categorical and boolean; null for numeric);
- ``min`` / ``max`` (finite numeric values) and ``n_distinct`` (distinct non-null values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
ProfileKind = Literal["numeric", "categorical", "boolean"]
PROFILE_KINDS: tuple[str, ...] = ("numeric", "categorical", "boolean")
QUANTILE_LEVELS: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
N_BINS = 10
MAX_LEVELS = 100
#: PSI's logarithm is undefined for an empty bin; shares are floored at this.
PSI_FLOOR = 1e-4


def quantile_key(level: float) -> str:
    """The JSON key of a quantile level: ``0.5`` -> ``"0.5"``, ``0.01`` -> ``"0.01"``."""
    return f"{level:g}"


@dataclass(frozen=True)
class ColumnProfile:
    """One column's figures; see the module docstring for each field."""

    kind: str
    missing_share: float
    non_finite_share: float = 0.0
    quantiles: dict[str, float] | None = None
    bin_edges: list[float] | None = None
    bin_shares: list[float] | None = None
    levels: dict[str, int] | None = None
    other_count: int | None = None
    min: float | None = None
    max: float | None = None
    n_distinct: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "missing_share": self.missing_share,
            "non_finite_share": self.non_finite_share,
            "quantiles": None if self.quantiles is None else dict(self.quantiles),
            "bin_edges": None if self.bin_edges is None else list(self.bin_edges),
            "bin_shares": None if self.bin_shares is None else list(self.bin_shares),
            "levels": None if self.levels is None else dict(self.levels),
            "other_count": self.other_count,
            "min": self.min,
            "max": self.max,
            "n_distinct": self.n_distinct,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnProfile:
        if data.get("kind") not in PROFILE_KINDS:
            raise ValueError(
                f"column profile kind {data.get('kind')!r} is not one of {PROFILE_KINDS}"
            )

        def floats(values: Any) -> list[float] | None:
            return None if values is None else [float(v) for v in values]

        quantiles = data.get("quantiles")
        levels = data.get("levels")
        return cls(
            kind=str(data["kind"]),
            missing_share=float(data["missing_share"]),
            non_finite_share=float(data.get("non_finite_share", 0.0)),
            quantiles=None
            if quantiles is None
            else {str(k): float(v) for k, v in quantiles.items()},
            bin_edges=floats(data.get("bin_edges")),
            bin_shares=floats(data.get("bin_shares")),
            levels=None if levels is None else {str(k): int(v) for k, v in levels.items()},
            other_count=None if data.get("other_count") is None else int(data["other_count"]),
            min=None if data.get("min") is None else float(data["min"]),
            max=None if data.get("max") is None else float(data["max"]),
            n_distinct=int(data.get("n_distinct", 0)),
        )

    def quantile(self, level: float) -> float | None:
        """The stored quantile at ``level`` (one of ``QUANTILE_LEVELS``), or None."""
        if self.quantiles is None:
            return None
        return self.quantiles.get(quantile_key(level))

    def shares_of(self, values: Any) -> np.ndarray | None:
        """Shares of the finite ``values`` in this profile's numeric bins (None: no bins).

        Bin ``i`` holds ``edges[i] <= v < edges[i + 1]``, the last one its upper edge too;
        values below the first edge count in the first bin, above the last in the last,
        exactly as the training values were counted.
        """
        if not self.bin_edges or len(self.bin_edges) < 2:
            return None
        array = _finite(np.asarray(values, dtype=np.float64))
        n_bins = len(self.bin_edges) - 1
        if len(array) == 0:
            return np.zeros(n_bins)
        index = np.searchsorted(np.asarray(self.bin_edges[1:-1]), array, side="right")
        return np.bincount(index, minlength=n_bins)[:n_bins] / len(array)


@dataclass(frozen=True)
class DataProfile:
    """The training profile: row count and one ``ColumnProfile`` per feature column."""

    n_rows: int
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    version: int = PROFILE_VERSION

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        feature_columns: Sequence[str] | None = None,
        kinds: Mapping[str, str] | Sequence[str] | None = None,
    ) -> DataProfile:
        """Profile ``feature_columns`` of ``frame`` (default: every column).

        ``kinds`` maps each column to its kind (or lists them in ``feature_columns``'
        order); a column without one gets the kind its dtype suggests (``infer_kind``).
        """
        names = [str(c) for c in (frame.columns if feature_columns is None else feature_columns)]
        given = _kinds_by_name(names, kinds)
        columns = {}
        for name in names:
            series = frame[name]
            kind = given.get(name) or infer_kind(series)
            columns[name] = profile_column(series, kind)
        return cls(n_rows=int(len(frame)), columns=columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "n_rows": self.n_rows,
            "columns": {name: col.to_dict() for name, col in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataProfile:
        if not isinstance(data, Mapping):
            raise ValueError(f"a profile is a JSON object, not {type(data).__name__}")
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise ValueError(f"profile version {version!r}; this vae_core reads {PROFILE_VERSION}")
        columns = data.get("columns")
        if not isinstance(columns, Mapping):
            raise ValueError("a profile's 'columns' is a JSON object of column profiles")
        return cls(
            n_rows=int(data["n_rows"]),
            columns={str(k): ColumnProfile.from_dict(v) for k, v in columns.items()},
            version=PROFILE_VERSION,
        )


def infer_kind(series: pd.Series) -> str:
    """``boolean`` for booleans, ``numeric`` for other numbers, ``categorical`` otherwise.

    The same rule ``vae_core.schema.infer_schema`` applies, with booleans told apart.
    """
    if pd.api.types.is_bool_dtype(series) or _holds_booleans(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    return "categorical"


def _holds_booleans(series: pd.Series) -> bool:
    """An object column of True/False and nulls: how a boolean column with a null reads
    from Parquet. Its kind is boolean, whichever dtype a given file gave it."""
    if series.dtype != object:
        return False
    present = series.dropna()
    return len(present) > 0 and all(isinstance(v, bool | np.bool_) for v in present)


def schema_kinds(schema: Any) -> dict[str, str]:
    """The profile kind of each feature of a ``FeatureSchema`` (booleans by their dtype)."""
    kinds = {}
    for spec in schema.columns:
        is_bool = spec.dtype in ("bool", "boolean")
        kinds[spec.name] = (
            "numeric" if spec.kind == "numeric" else ("boolean" if is_bool else "categorical")
        )
    return kinds


def profile_column(series: pd.Series, kind: str) -> ColumnProfile:
    """One column's profile as ``kind`` (numeric values that are not numbers are missing)."""
    if kind not in PROFILE_KINDS:
        raise ValueError(f"kind {kind!r} is not one of {PROFILE_KINDS}")
    n_rows = len(series)
    if kind == "numeric":
        return _numeric_profile(_as_floats(series), n_rows)
    if kind == "categorical" and _holds_booleans(series):
        kind = "boolean"
    missing = series.isna().to_numpy()
    present = series[~missing].astype(str)
    counts = present.value_counts(sort=False)
    # Most frequent first, ties by level name, so the profile of the same data is the same.
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    top = {str(level): int(n) for level, n in ordered[:MAX_LEVELS]}
    return ColumnProfile(
        kind=kind,
        missing_share=_share(int(missing.sum()), n_rows),
        levels=top,
        other_count=int(sum(int(n) for _, n in ordered[MAX_LEVELS:])),
        n_distinct=len(ordered),
    )


def _numeric_profile(values: np.ndarray, n_rows: int) -> ColumnProfile:
    missing = np.isnan(values)
    finite = values[np.isfinite(values)]
    non_finite = int((~missing).sum() - len(finite))
    base: dict[str, Any] = {
        "kind": "numeric",
        "missing_share": _share(int(missing.sum()), n_rows),
        "non_finite_share": _share(non_finite, n_rows),
    }
    if len(finite) == 0:
        distinct = len(np.unique(values[~missing]))
        return ColumnProfile(**base, bin_edges=[], bin_shares=[], n_distinct=distinct)
    ordered = np.sort(finite)
    quantiles = _quantiles(ordered, QUANTILE_LEVELS)
    edges = np.unique(_quantiles(ordered, np.linspace(0.0, 1.0, N_BINS + 1)))
    if len(edges) == 1:
        edges = np.repeat(edges, 2)  # a constant column: one bin holding every value
    profile = ColumnProfile(
        **base,
        quantiles={
            quantile_key(q): float(v) for q, v in zip(QUANTILE_LEVELS, quantiles, strict=True)
        },
        bin_edges=[float(e) for e in edges],
        min=float(ordered[0]),
        max=float(ordered[-1]),
        n_distinct=int(np.count_nonzero(np.diff(ordered)) + 1),
    )
    shares = profile.shares_of(ordered)
    assert shares is not None
    return ColumnProfile(**{**profile.to_dict(), "bin_shares": [float(s) for s in shares]})


def _quantiles(ordered: np.ndarray, levels: Sequence[float] | np.ndarray) -> np.ndarray:
    """Linear-interpolated quantiles of sorted finite values; never inf or NaN.

    Interpolating between values near +-1e308 overflows, so those levels take the nearest
    value below instead (a quantile of data that extreme is an alarm either way).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.quantile(ordered, levels, method="linear")
    bad = ~np.isfinite(out)
    if bad.any():
        out[bad] = np.quantile(ordered, np.asarray(levels)[bad], method="lower")
    return out


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins.

    ``sum((a - e) * ln(a / e))`` with both floored at ``PSI_FLOOR``: 0 for the same
    distribution; 0.1 is commonly read as a moderate shift, 0.25 as a large one.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), PSI_FLOOR)
    if e.shape != a.shape:
        raise ValueError(f"share vectors differ in length: {e.shape} vs {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def _as_floats(series: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        numbers = series
    else:
        numbers = pd.to_numeric(series, errors="coerce")
    return pd.Series(numbers).astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def _share(count: int, total: int) -> float:
    return float(count / total) if total else 0.0


def _kinds_by_name(
    names: list[str], kinds: Mapping[str, str] | Sequence[str] | None
) -> dict[str, str]:
    if kinds is None:
        return {}
    if isinstance(kinds, Mapping):
        return {str(k): str(v) for k, v in kinds.items()}
    listed = list(kinds)
    if len(listed) != len(names):
        raise ValueError(f"{len(listed)} kinds for {len(names)} columns")
    return dict(zip(names, (str(k) for k in listed), strict=True))
