"""Sliding windows over sensor series, one per timestamp, that can be built batch by batch.

Sensor data arrives as long tables: a timestamp, zero or more entity (device) columns and
one column per channel. The windowed detector sees, for each row, the ``length`` most recent
rows of the same entity, all channels, flattened (optionally with their first differences).

Rules, applied in this order (they are what makes batch-by-batch building give exactly the
windows that one-piece building gives):

1. Rows are sorted per entity by timestamp (stable: among equal timestamps, input order).
2. Duplicate timestamps of an entity: the first row in input order is kept; later copies
   get ``window_status = "duplicate"`` and no score. Keeping the first, not the last, is
   what a stream can honour: a copy arriving in a later batch cannot change a score that
   was already written.
3. A row without a timestamp gets ``"missing_timestamp"``; in batch-by-batch building, a
   row older than the newest row of its entity seen in an earlier batch gets ``"late"``
   (its place in the series is already scored). Batches in time order per entity never
   produce late rows; rows inside one batch may come in any order.
4. A step longer than ``gap_tolerance`` between consecutive rows of an entity starts a new
   segment. Windows never cross an entity boundary or a gap.
5. The window of a row is the ``length`` rows of its segment ending at it: each timestamp's
   score is the score of the window ending there. A row with fewer than ``length - 1``
   rows before it in its segment gets ``"warming_up"`` (the first segment of its entity)
   or ``"after_gap"``, and no score. Every row stays in the output.

``WindowBuilder`` carries the last ``length - 1`` rows of each entity (with their position
in their segment) from one batch to the next, which is all rules 2-5 need.

Resampling (``resample``, a fixed pandas frequency such as ``"1s"``; datetime timestamps
only) replaces rule 5 for irregularly sampled series: rules 1-4 still decide which rows
count and where a series breaks, and the windows are then built over a regular time grid:

6. The grid steps are the multiples of the frequency counted from the Unix epoch (UTC for
   zoned times), so a batch boundary cannot shift them. The channel values at a step are
   those of the last kept row at or before it (forward fill, a missing value stays
   missing), but never of a row older than ``gap_tolerance``: after a gap the grid has no
   steps until the next row, and the first step after a gap (rule 4) starts a new
   segment. A window is ``length`` consecutive grid steps of one segment.
7. Each input row keeps its place and gets the window ending at the grid step at or before
   its timestamp. That step depends only on rows at or before the row itself, which is
   what keeps batch-by-batch scores exact; a row between grid points enters the windows
   from the next step on. Several rows in one grid interval share a window. A row whose
   step has no full window is ``"warming_up"`` (before its entity's first full window)
   or ``"after_gap"``, as without resampling.

With resampling, the builder carries the newest row of each entity (rules 2-3 and the
forward fill) and the last ``length`` grid steps with their position in their segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from vae_core.errors import EmptyInputError, SchemaError
from vae_core.schema import check_numeric_column, is_datetime_dtype, is_numeric_dtype

STATUS_OK = "ok"
STATUS_WARMING_UP = "warming_up"
STATUS_AFTER_GAP = "after_gap"
STATUS_DUPLICATE = "duplicate"
STATUS_LATE = "late"
STATUS_MISSING_TIMESTAMP = "missing_timestamp"
WINDOW_STATUSES = (
    STATUS_OK,
    STATUS_WARMING_UP,
    STATUS_AFTER_GAP,
    STATUS_DUPLICATE,
    STATUS_LATE,
    STATUS_MISSING_TIMESTAMP,
)
#: Gap tolerance ``"auto"`` = this many median steps of the training series.
AUTO_GAP_STEPS = 3.0

_POS = "__window_pos"  # position of a row in its segment (0 = segment start)
_INITIAL = "__window_initial"  # whether the row's segment is its entity's first
_ROW = "__window_row"  # input position of a new row; -1 for rows carried from a batch
_CARRIED = "__window_carried"


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

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (*self.entity_columns, self.timestamp_column)

    @property
    def feature_names(self) -> list[str]:
        """``Pressure@t-3`` is channel Pressure three steps before the scored row."""
        names = [
            f"{channel}{_lag(lag)}"
            for lag in range(self.length - 1, -1, -1)
            for channel in self.channels
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
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowSpec:
        return cls(
            **{
                **data,
                "channels": tuple(data["channels"]),
                "entity_columns": tuple(data["entity_columns"]),
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


@dataclass
class _GridTail:
    """What an entity's grid needs from earlier batches (see rule 6)."""

    steps: np.ndarray  # int64 ns of the last ``length`` grid steps, oldest first
    values: np.ndarray  # (len(steps), channels)
    pos: np.ndarray  # position of each step in its segment
    initial: np.ndarray  # whether each step's segment is the entity's first
    #: Whether the newest step was filled from the segment (rule 4) of the newest row.
    same_segment: bool


@dataclass(frozen=True)
class Windows:
    """Windows of one batch: a feature matrix for the rows that have one, and a status per row."""

    features: pd.DataFrame  # one row per scored input row, columns = spec.feature_names
    rows: np.ndarray  # input positions (0..n-1) of the rows in ``features``
    status: np.ndarray  # one status per input row, in input order
    #: Entity values of each row in ``features``; rows come sorted by entity, then time.
    entity_keys: list[tuple[Any, ...]]

    def counts(self) -> dict[str, int]:
        values, counts = np.unique(self.status, return_counts=True)
        return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


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
    steps = _steps(ordered, timestamp_column, entity_columns)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if steps.size == 0:
        return None
    return float(AUTO_GAP_STEPS * np.median(steps))


def _steps(
    ordered: pd.DataFrame, timestamp_column: str, entity_columns: Sequence[str]
) -> np.ndarray:
    """Step from the previous row of the same entity (NaN at each entity's first row)."""
    ts = ordered[timestamp_column]
    delta = ts.diff()
    if is_datetime_dtype(ts):
        delta = delta.dt.total_seconds()
    steps = delta.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    if entity_columns and len(ordered):
        codes = ordered.groupby(list(entity_columns), sort=False, dropna=False).ngroup().to_numpy()
        first = np.r_[True, codes[1:] != codes[:-1]]
        steps[first] = np.nan
    return steps


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


class WindowBuilder:
    """Builds windows batch by batch, carrying each entity's tail to the next batch."""

    def __init__(self, spec: WindowSpec):
        self.spec = spec
        self._tail: pd.DataFrame | None = None
        self._grid: dict[tuple[Any, ...], _GridTail] = {}

    def transform(self, frame: pd.DataFrame, source: str = "input", stride: int = 1) -> Windows:
        """Windows of the rows of ``frame``; ``stride`` > 1 keeps every stride-th window."""
        spec = self.spec
        check_columns(frame, spec, source)
        columns = [*spec.key_columns, *spec.channels]
        new = frame[columns].reset_index(drop=True)
        ts = spec.timestamp_column
        new[ts] = parse_timestamps(new[ts], ts, source)
        if spec.resample is not None and not is_datetime_dtype(new[ts]):
            raise SchemaError(
                f"{source}: resample={spec.resample!r} needs datetime timestamps; column "
                f"'{ts}' holds {new[ts].dtype}."
            )
        for channel in spec.channels:
            new[channel] = pd.to_numeric(new[channel], errors="coerce").astype(np.float64)
        n = len(new)
        new[_ROW] = np.arange(n)
        new[_CARRIED] = False
        new[_POS] = 0
        new[_INITIAL] = True
        tail = self._tail
        combined = new if tail is None or tail.empty else pd.concat([tail, new], ignore_index=True)
        status = np.full(n, STATUS_OK, dtype=object)

        no_time = combined[spec.timestamp_column].isna().to_numpy()
        status[combined.loc[no_time, _ROW].to_numpy()] = STATUS_MISSING_TIMESTAMP
        combined = combined.loc[~no_time]
        # Carried rows sort before new rows with the same timestamp, so they stay "first".
        ordered = combined.sort_values(
            [*spec.entity_columns, spec.timestamp_column, _CARRIED, _ROW],
            ascending=[True] * (len(spec.key_columns)) + [False, True],
            kind="stable",
            na_position="last",
        ).reset_index(drop=True)
        duplicate = ordered.duplicated([*spec.key_columns], keep="first").to_numpy()
        late = self._late_rows(ordered) & ~duplicate
        status[ordered.loc[duplicate, _ROW].to_numpy()] = STATUS_DUPLICATE
        status[ordered.loc[late, _ROW].to_numpy()] = STATUS_LATE
        clean = ordered.loc[~duplicate & ~late].reset_index(drop=True)

        codes = self._entity_codes(clean)
        entity_start = np.r_[True, codes[1:] != codes[:-1]] if len(clean) else np.zeros(0, bool)
        steps = _steps(clean, spec.timestamp_column, ())
        gap = np.zeros(len(clean), dtype=bool)
        if spec.gap_tolerance is not None:
            gap = ~entity_start & (steps > spec.gap_tolerance)
        segment_start = entity_start | gap
        if spec.resample is not None:
            return self._transform_resampled(clean, codes, segment_start, status, stride)
        segment = np.cumsum(segment_start) - 1
        first_of_segment = np.flatnonzero(segment_start)
        # Position continues from the carried row that opens a segment (0 for a new row).
        base_pos = clean[_POS].to_numpy()[first_of_segment]
        initial = clean[_INITIAL].to_numpy()[first_of_segment] & entity_start[first_of_segment]
        index = np.arange(len(clean))
        pos = base_pos[segment] + index - first_of_segment[segment]
        clean[_POS] = pos
        clean[_INITIAL] = initial[segment]

        is_new = ~clean[_CARRIED].to_numpy(dtype=bool)
        short = is_new & (pos < spec.length - 1)
        rows_new = clean[_ROW].to_numpy()
        status[rows_new[short & clean[_INITIAL].to_numpy(dtype=bool)]] = STATUS_WARMING_UP
        status[rows_new[short & ~clean[_INITIAL].to_numpy(dtype=bool)]] = STATUS_AFTER_GAP

        full = np.flatnonzero(is_new & (pos >= spec.length - 1))
        if stride > 1:
            full = full[(pos[full] - (spec.length - 1)) % stride == 0]
        values = clean[list(spec.channels)].to_numpy(dtype=np.float64)
        features = self._window_matrix(values, full)
        self._tail = self._keep_tail(clean, codes)
        return Windows(
            features=pd.DataFrame(features, columns=spec.feature_names),
            rows=rows_new[full].astype(np.int64),
            status=status,
            entity_keys=self._keys(clean, full),
        )

    def _keys(self, clean: pd.DataFrame, positions: np.ndarray) -> list[tuple[Any, ...]]:
        if not self.spec.entity_columns:
            return [() for _ in positions]
        keys = clean.iloc[positions][list(self.spec.entity_columns)]
        # NaN != NaN: a missing entity value becomes None so that it keys one series.
        return [
            tuple(None if pd.isna(v) else v for v in key)
            for key in keys.itertuples(index=False, name=None)
        ]

    def _transform_resampled(
        self,
        clean: pd.DataFrame,
        codes: np.ndarray,
        segment_start: np.ndarray,
        status: np.ndarray,
        stride: int,
    ) -> Windows:
        """Rules 6-7: windows over each entity's time grid, one per kept new row."""
        spec = self.spec
        length = spec.length
        step = int(resample_step(str(spec.resample)).value)
        tolerance = None if spec.gap_tolerance is None else int(round(spec.gap_tolerance * 1e9))
        times = pd.DatetimeIndex(clean[spec.timestamp_column]).as_unit("ns").asi8
        values = clean[list(spec.channels)].to_numpy(dtype=np.float64)
        is_new = ~clean[_CARRIED].to_numpy(dtype=bool)
        rows_new = clean[_ROW].to_numpy()
        raw_segment = np.cumsum(segment_start)
        bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True]) if len(clean) else [0]
        grid_values: list[np.ndarray] = []
        offset = 0
        ends: list[np.ndarray] = []
        scored: list[np.ndarray] = []
        for first, stop in zip(bounds[:-1], bounds[1:], strict=True):
            key = self._keys(clean, np.array([first]))[0]
            tail = self._grid.get(key)
            t, segment = times[first:stop], raw_segment[first:stop]
            # Steps each row fills: from its own (or the first unfilled) grid point up to the
            # next row, and not further than the gap tolerance; the newest row fills only up
            # to itself, later steps wait for the next row or batch.
            lower = -(-t // step) * step
            if tail is not None:
                lower = np.maximum(lower, tail.steps[-1] + step)
            upper = np.r_[t[1:] - 1, t[-1]]
            if tolerance is not None:
                upper = np.minimum(upper, t + tolerance)
            upper = upper // step * step
            counts = np.maximum((upper - lower) // step + 1, 0)
            owner = np.repeat(np.arange(len(t)), counts)
            steps = lower[owner] + step * (
                np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
            )
            step_segment = segment[owner]
            breaks = np.ones(len(steps), dtype=bool)
            breaks[1:] = (np.diff(steps) != step) | (step_segment[1:] != step_segment[:-1])
            if len(steps) and tail is not None:
                breaks[0] = not (
                    tail.same_segment
                    and steps[0] == tail.steps[-1] + step
                    and step_segment[0] == segment[0]
                )
            # Runs of steps within this batch; the first continues the carried segment
            # unless breaks[0] says otherwise.
            run_start = breaks.copy()
            run_start[:1] = True
            starts = np.flatnonzero(run_start)
            which = np.cumsum(run_start) - 1
            base = np.zeros(len(starts), dtype=np.int64)
            first_initial = tail is None
            if len(steps) and tail is not None and not breaks[0]:
                base[0] = tail.pos[-1] + 1
                first_initial = bool(tail.initial[-1])
            pos = base[which] + np.arange(len(steps)) - starts[which]
            initial = (which == 0) & first_initial
            old = tail.steps if tail is not None else np.zeros(0, dtype=np.int64)
            all_steps = np.r_[old, steps]
            all_values = np.concatenate(
                [tail.values if tail is not None else values[:0], values[first:stop][owner]]
            )
            all_pos = np.r_[tail.pos if tail is not None else np.zeros(0, np.int64), pos]
            all_initial = np.r_[tail.initial if tail is not None else np.zeros(0, bool), initial]

            new_rows = np.flatnonzero(is_new[first:stop])
            at = t[new_rows] // step * step
            index = np.searchsorted(all_steps, at)
            found = index < len(all_steps)
            found[found] = all_steps[index[found]] == at[found]
            index = np.where(found, index, 0)
            if len(all_steps):
                row_pos = np.where(found, all_pos[index], -1)
                row_initial = all_initial[index]
            else:
                row_pos = np.full(len(at), -1)
                row_initial = np.zeros(len(at), dtype=bool)
            full = found & (row_pos >= length - 1)
            if stride > 1:
                full &= (row_pos - (length - 1)) % stride == 0
            short = ~found | (row_pos < length - 1)
            # A row before the entity's first grid step warms up; one in the stale part of
            # a gap (no step at its time) comes after a gap.
            first_step = steps[0] if len(steps) else np.iinfo(np.int64).max
            warming = np.where(found, row_initial, (tail is None) & (at < first_step))
            positions = first + new_rows
            status[rows_new[positions[short & warming]]] = STATUS_WARMING_UP
            status[rows_new[positions[short & ~warming]]] = STATUS_AFTER_GAP
            ends.append(index[full] + offset)
            scored.append(positions[full])
            grid_values.append(all_values)
            offset += len(all_steps)

            if len(all_steps):
                keep = slice(-length, None)
                same = (
                    step_segment[-1] == segment[-1]
                    if len(steps)
                    else tail is not None and tail.same_segment and segment[-1] == segment[0]
                )
                self._grid[key] = _GridTail(
                    all_steps[keep], all_values[keep], all_pos[keep], all_initial[keep], bool(same)
                )
        channels = len(spec.channels)
        stacked = np.concatenate(grid_values) if grid_values else np.zeros((0, channels))
        end_index = np.concatenate(ends).astype(np.int64) if ends else np.zeros(0, np.int64)
        positions = np.concatenate(scored).astype(np.int64) if scored else np.zeros(0, np.int64)
        features = self._window_matrix(stacked, end_index)
        # Only the newest row of each entity: late rows, copies and the forward fill need it.
        self._tail = self._keep_tail(clean, codes, keep=1)
        return Windows(
            features=pd.DataFrame(features, columns=spec.feature_names),
            rows=rows_new[positions].astype(np.int64),
            status=status,
            entity_keys=self._keys(clean, positions),
        )

    def _entity_codes(self, clean: pd.DataFrame) -> np.ndarray:
        if not self.spec.entity_columns or clean.empty:
            return np.zeros(len(clean), dtype=np.int64)
        grouped = clean.groupby(list(self.spec.entity_columns), sort=False, dropna=False)
        return grouped.ngroup().to_numpy()

    def _late_rows(self, ordered: pd.DataFrame) -> np.ndarray:
        """New rows older than the newest carried row of their entity."""
        carried = ordered[_CARRIED].to_numpy(dtype=bool)
        if not carried.any():
            return np.zeros(len(ordered), dtype=bool)
        ts = self.spec.timestamp_column
        entities = list(self.spec.entity_columns)
        if entities:
            newest = (
                ordered.loc[carried].groupby(entities, dropna=False)[ts].max().rename("__newest")
            )
            newest_per_row = ordered[entities].merge(
                newest, how="left", left_on=entities, right_index=True
            )["__newest"]
        else:
            newest_per_row = pd.Series(ordered.loc[carried, ts].max(), index=ordered.index)
        older = (ordered[ts] < newest_per_row.to_numpy()).to_numpy(dtype=bool)
        return older & ~carried

    def _window_matrix(self, values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        length = self.spec.length
        lags = np.arange(length - 1, -1, -1)
        stacked = values[ends[:, None] - lags[None, :]]  # (m, length, channels), oldest first
        n_channels = len(self.spec.channels)
        parts = [stacked.reshape(len(ends), length * n_channels)]
        if self.spec.differences and length > 1:
            diffs = np.diff(stacked, axis=1)
            parts.append(diffs.reshape(len(ends), (length - 1) * n_channels))
        return np.concatenate(parts, axis=1)

    def _keep_tail(
        self, clean: pd.DataFrame, codes: np.ndarray, keep: int | None = None
    ) -> pd.DataFrame:
        # At least one row per entity: the newest timestamp decides what is late or a copy.
        keep = max(self.spec.length - 1, 1) if keep is None else keep
        rank_from_end = (
            pd.Series(codes).groupby(codes).cumcount(ascending=False).to_numpy()
            if len(clean)
            else np.zeros(0, dtype=np.int64)
        )
        tail = clean.loc[rank_from_end < keep].copy()
        tail[_CARRIED] = True
        tail[_ROW] = -1
        return tail.reset_index(drop=True)


def fit_spec(
    frame: pd.DataFrame,
    timestamp_column: str,
    entity_columns: Sequence[str] = (),
    channels: Sequence[str] | None = None,
    length: int = 10,
    differences: bool = False,
    gap_tolerance: float | str | None = "auto",
    resample: str | None = None,
) -> WindowSpec:
    """Resolve default channels and an ``"auto"`` gap tolerance from training data.

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
    if gap_tolerance == "auto":
        keys = frame[[*entity_columns, timestamp_column]]
        stamps = parse_timestamps(keys[timestamp_column], timestamp_column, "training data")
        keys = keys.assign(**{timestamp_column: stamps}).dropna(subset=[timestamp_column])
        tolerance = infer_gap_tolerance(keys, timestamp_column, entity_columns)
    elif gap_tolerance is None:
        tolerance = None
    else:
        tolerance = float(gap_tolerance)
    return WindowSpec(
        timestamp_column=timestamp_column,
        channels=resolved,
        entity_columns=entity_columns,
        length=int(length),
        differences=bool(differences),
        gap_tolerance=tolerance,
        resample=resample,
    )
