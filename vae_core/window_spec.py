"""What a window is: its spec, resolved from training data and stored with the model.

``WindowSpec`` names the timestamp, entity and channel columns and says how rows become
windows (length, first differences, gap tolerance, an optional time grid); ``fit_spec``
resolves default channels and an ``"auto"`` gap tolerance from the training data. The
checks and conversions every batch goes through before windows are built
(``check_columns``, ``parse_timestamps``) are here too. ``vae_core.windows`` builds the
windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from vae_core.errors import EmptyInputError, SchemaError
from vae_core.schema import check_numeric_column, is_datetime_dtype, is_numeric_dtype

#: Gap tolerance ``"auto"`` = this many median steps of the training series.
AUTO_GAP_STEPS = 3.0
#: ``slow_channels="auto"``: a channel whose consecutive training rows correlate at least
#: this much (lag-1 autocorrelation, within each series; white noise 0, a random walk near
#: 1) wanders, and a short history does not span the levels it reaches next. On SKAB the two
#: temperatures (0.77-1.00 over the valve1 files' training parts, 0.57-1.00 on slices of the
#: anomaly-free series) drifted out of their training range and raised half the false
#: alarms; 0.75, 0.8 and 0.9 gave F1 0.860, 0.855 and 0.840 at the 4-IQR fence
#: (benchmarks/README.md).
SLOW_AUTOCORRELATION = 0.75


@dataclass(frozen=True)
class WindowSpec:
    """How rows become windows; resolved at fit and stored with the model as JSON."""

    timestamp_column: str
    channels: tuple[str, ...]
    entity_columns: tuple[str, ...] = ()
    length: int = 10
    differences: bool = False
    #: Longest step (seconds for datetime timestamps, else timestamp units) inside a
    #: segment; ``None`` never splits a series.
    gap_tolerance: float | None = None
    #: Fixed pandas frequency (``"1s"``, ``"500ms"``) of the time grid the windows are built
    #: on; ``None`` builds them over the rows themselves.
    resample: str | None = None
    #: Channels that enter a window by their first differences only: their levels wander
    #: beyond what the training history spans (see ``SLOW_AUTOCORRELATION``).
    slow_channels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if int(self.length) < 1:
            raise ValueError(f"window length={self.length!r} must be at least 1.")
        if not self.channels:
            raise ValueError("a window needs at least one channel.")
        if self.gap_tolerance is not None and not self.gap_tolerance > 0:
            raise ValueError(f"gap_tolerance={self.gap_tolerance!r} must be positive.")
        if self.resample is not None:
            resample_step(self.resample)
        keys = {self.timestamp_column, *self.entity_columns}
        clash = sorted(keys & set(self.channels))
        if clash:
            raise ValueError(f"column(s) {clash} cannot be both a key and a channel.")
        self._check_slow_channels()

    def _check_slow_channels(self) -> None:
        unknown = sorted(set(self.slow_channels) - set(self.channels))
        if unknown:
            raise ValueError(f"slow channel(s) {unknown} are not among the channels.")
        if self.slow_channels and not (self.differences and self.length > 1):
            raise ValueError(
                "slow channels enter a window by their first differences only, which "
                "needs differences=True and a window of at least 2."
            )

    @property
    def level_channels(self) -> tuple[str, ...]:
        """The channels whose values (not only their differences) are window features."""
        return tuple(c for c in self.channels if c not in self.slow_channels)

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (*self.entity_columns, self.timestamp_column)

    @property
    def feature_names(self) -> list[str]:
        """``Pressure@t-3`` is channel Pressure three steps before the scored row."""
        names = [
            f"{channel}{_lag(lag)}"
            for lag in range(self.length - 1, -1, -1)
            for channel in self.level_channels
        ]
        if self.differences:
            names += [
                f"{channel}.diff{_lag(lag)}"
                for lag in range(self.length - 2, -1, -1)
                for channel in self.channels
            ]
        return names

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["channels"] = list(self.channels)
        data["entity_columns"] = list(self.entity_columns)
        data["slow_channels"] = list(self.slow_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowSpec:
        return cls(
            **{
                **data,
                "channels": tuple(data["channels"]),
                "entity_columns": tuple(data["entity_columns"]),
                # Absent from the models saved before slow channels: every level is a feature.
                "slow_channels": tuple(data.get("slow_channels", ())),
            }
        )


def _lag(lag: int) -> str:
    return "@t" if lag == 0 else f"@t-{lag}"


def resample_step(frequency: str) -> pd.Timedelta:
    """The grid step of a fixed pandas frequency; calendar ones (``"MS"``) have no fixed step."""
    try:
        # Any offset goes in: a calendar one ("MS") raises ValueError, which becomes the
        # message below (the stubs accept only the fixed offsets this call lets through).
        step = pd.Timedelta(pd.tseries.frequencies.to_offset(frequency))  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"resample={frequency!r} is not a fixed pandas frequency such as '1s', '500ms' "
            f"or '5min' ({exc})."
        ) from exc
    if step <= pd.Timedelta(0):
        raise ValueError(f"resample={frequency!r} must be a positive frequency.")
    return step


def resolve_channels(
    frame: pd.DataFrame, timestamp_column: str, entity_columns: Sequence[str]
) -> tuple[str, ...]:
    """Default channels: every numeric column that is not a key."""
    keys = {timestamp_column, *entity_columns}
    channels = tuple(str(c) for c in frame.columns if c not in keys and is_numeric_dtype(frame[c]))
    if not channels:
        raise EmptyInputError(
            f"no numeric channel columns besides the keys {sorted(keys)} "
            f"(columns: {list(frame.columns)[:20]}); name the channels explicitly."
        )
    return channels


def infer_gap_tolerance(
    frame: pd.DataFrame, timestamp_column: str, entity_columns: Sequence[str]
) -> float | None:
    """``AUTO_GAP_STEPS`` times the median step between consecutive rows of an entity."""
    ordered = frame.sort_values([*entity_columns, timestamp_column], kind="stable")
    return _gap_tolerance_of(ordered, timestamp_column, entity_columns)


def _gap_tolerance_of(
    ordered: pd.DataFrame, timestamp_column: str, entity_columns: Sequence[str]
) -> float | None:
    steps = steps_between_rows(ordered, timestamp_column, entity_columns)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if steps.size == 0:
        return None
    return float(AUTO_GAP_STEPS * np.median(steps))


def steps_between_rows(
    ordered: pd.DataFrame, timestamp_column: str, entity_columns: Sequence[str]
) -> np.ndarray:
    """Step from the previous row of the same entity (NaN at each entity's first row).

    ``ordered`` is sorted by entity, then time; datetime steps are in seconds.
    """
    ts = ordered[timestamp_column]
    delta = ts.diff()
    if is_datetime_dtype(ts):
        delta = delta.dt.total_seconds()
    steps = delta.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    if entity_columns and len(ordered):
        codes = series_codes(ordered, entity_columns)
        first = np.r_[True, codes[1:] != codes[:-1]]
        steps[first] = np.nan
    return steps


def series_codes(frame: pd.DataFrame, entity_columns: Sequence[str]) -> np.ndarray:
    """Each row's series as an integer (its entity's group number; all 0 without entities)."""
    if not entity_columns or frame.empty:
        return np.zeros(len(frame), dtype=np.int64)
    grouped = frame.groupby(list(entity_columns), sort=False, dropna=False)
    return grouped.ngroup().to_numpy(dtype=np.int64)


def _time_ordered(
    frame: pd.DataFrame,
    timestamp_column: str,
    entity_columns: Sequence[str],
    columns: Sequence[str],
) -> pd.DataFrame:
    """The keys (timestamps parsed) and ``columns``, sorted by entity, then time (stable;
    rows without a timestamp last in their entity). Only these columns are copied."""
    keys = frame[[*entity_columns, timestamp_column]]
    stamps = parse_timestamps(keys[timestamp_column], timestamp_column, "training data")
    ordered = pd.concat([keys.assign(**{timestamp_column: stamps}), frame[list(columns)]], axis=1)
    return ordered.sort_values([*entity_columns, timestamp_column], kind="stable")


def parse_timestamps(values: pd.Series, name: str, source: str) -> pd.Series:
    """Datetimes and numbers as they are; text (JSON, CSV exports) parsed as datetimes."""
    if is_datetime_dtype(values) or is_numeric_dtype(values):
        return values
    parsed = pd.to_datetime(values, errors="coerce", format="ISO8601")
    bad = parsed.isna() & values.notna()
    if bad.any():
        position = int(np.flatnonzero(bad.to_numpy())[0])
        raise SchemaError(
            f"{source}: timestamp column '{name}' row {position} holds "
            f"{values.iloc[position]!r}, which is not a timestamp (ISO 8601) or a number."
        )
    return parsed


def check_columns(frame: pd.DataFrame, spec: WindowSpec, source: str) -> None:
    """Raise ``SchemaError`` naming a missing key or channel, or a non-numeric channel."""
    absent = [c for c in (*spec.key_columns, *spec.channels) if c not in frame.columns]
    if absent:
        raise SchemaError(
            f"{source}: column(s) {absent} are not in the data (columns: "
            f"{list(frame.columns)[:20]}); the sensor model needs its timestamp, entity "
            "and channel columns."
        )
    for channel in spec.channels:
        check_numeric_column(frame[channel], channel, source)


def fit_spec(
    frame: pd.DataFrame,
    timestamp_column: str,
    entity_columns: Sequence[str] = (),
    channels: Sequence[str] | None = None,
    length: int = 10,
    differences: bool = False,
    gap_tolerance: float | str | None = "auto",
    resample: str | None = None,
    slow_channels: Sequence[str] | str | None = "auto",
) -> WindowSpec:
    """Resolve default channels, an ``"auto"`` gap tolerance and ``"auto"`` slow channels
    from training data.

    The ``"auto"`` tolerance comes from the steps between rows, also when ``resample`` is
    set: it bounds how long a row's values may be carried forward on the grid.
    """
    entity_columns = tuple(entity_columns)
    if timestamp_column not in frame.columns:
        raise SchemaError(
            f"timestamp column '{timestamp_column}' is not in the training data "
            f"(columns: {list(frame.columns)[:20]})."
        )
    resolved = (
        tuple(channels) if channels else resolve_channels(frame, timestamp_column, entity_columns)
    )
    # Without differences a slow channel would have no features: then none is slow.
    find_slow = slow_channels == "auto" and differences and int(length) > 1
    present = _channels_in(frame, resolved, entity_columns, timestamp_column) if find_slow else []
    # Parsed and sorted once for both the gap tolerance and the slow channels.
    ordered = (
        _time_ordered(frame, timestamp_column, entity_columns, present)
        if gap_tolerance == "auto" or find_slow
        else frame.iloc[:0]  # neither is inferred
    )
    if gap_tolerance == "auto":
        # Rows without a timestamp sort last in their entity and give no step.
        tolerance = _gap_tolerance_of(ordered, timestamp_column, entity_columns)
    elif gap_tolerance is None:
        tolerance = None
    else:
        tolerance = float(gap_tolerance)
    if slow_channels == "auto":
        slow = _slow_channels_of(ordered, entity_columns, present)
    else:
        slow = tuple(slow_channels or ())
    return WindowSpec(
        timestamp_column=timestamp_column,
        channels=resolved,
        entity_columns=entity_columns,
        length=int(length),
        differences=bool(differences),
        gap_tolerance=tolerance,
        resample=resample,
        slow_channels=slow,
    )


def find_slow_channels(
    frame: pd.DataFrame,
    timestamp_column: str,
    entity_columns: Sequence[str],
    channels: Sequence[str],
) -> tuple[str, ...]:
    """Channels whose lag-1 autocorrelation within the series reaches ``SLOW_AUTOCORRELATION``."""
    present = _channels_in(frame, channels, entity_columns, timestamp_column)
    ordered = _time_ordered(frame, timestamp_column, entity_columns, present)
    return _slow_channels_of(ordered, entity_columns, present)


def _channels_in(
    frame: pd.DataFrame,
    channels: Sequence[str],
    entity_columns: Sequence[str],
    timestamp_column: str,
) -> list[str]:
    """The channels the frame holds that are not keys: a missing channel, or a key named as
    one, is reported by name when the spec is built or the windows are."""
    keys = {*entity_columns, timestamp_column}
    return [c for c in channels if c in frame.columns and c not in keys]


def _slow_channels_of(
    ordered: pd.DataFrame, entity_columns: Sequence[str], channels: Sequence[str]
) -> tuple[str, ...]:
    series = series_codes(ordered, entity_columns)
    return tuple(
        c for c in channels if _lag1_correlation(ordered[c], series) >= SLOW_AUTOCORRELATION
    )


def _lag1_correlation(values: pd.Series, series: np.ndarray) -> float:
    """Correlation of consecutive values within each series, around each series' own mean
    (so that devices at different levels do not look correlated); 0 where undefined."""
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    before, after, ids = x[:-1], x[1:], series[1:]
    keep = (series[:-1] == ids) & np.isfinite(before) & np.isfinite(after)
    before, after, ids = before[keep], after[keep], ids[keep]
    if len(ids) < 3:
        return 0.0
    before = before - _group_means(before, ids)
    after = after - _group_means(after, ids)
    scale = np.sqrt((before**2).sum() * (after**2).sum())
    return float((before * after).sum() / scale) if scale > 0 else 0.0


def _group_means(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    sums = np.bincount(ids, weights=x)
    counts = np.bincount(ids)
    return (sums / np.maximum(counts, 1))[ids]
