"""Sliding windows over sensor series, one per timestamp, that can be built batch by batch.

Sensor data arrives as long tables: a timestamp, zero or more entity (device) columns and
one column per channel. The windowed detector sees, for each row, the ``length`` most recent
rows of the same entity, all channels, flattened (optionally with their first differences;
a slow channel of the spec enters by its differences alone).

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
forward fill) and the last ``length`` grid steps with their position in their segment
(``vae_core.window_grid``). What a window is, ``WindowSpec``, and how it is resolved from
training data, ``fit_spec``, are in ``vae_core.window_spec``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from vae_core.errors import SchemaError
from vae_core.schema import is_datetime_dtype
from vae_core.window_grid import GridTail, TimeGrid
from vae_core.window_spec import (
    AUTO_GAP_STEPS,
    WindowSpec,
    check_columns,
    fit_spec,
    infer_gap_tolerance,
    parse_timestamps,
    resample_step,
    resolve_channels,
    series_codes,
    steps_between_rows,
)

# The spec's names are part of this module's API: windows are built and fitted from here.
__all__ = [
    "AUTO_GAP_STEPS",
    "STATUS_AFTER_GAP",
    "STATUS_DUPLICATE",
    "STATUS_LATE",
    "STATUS_MISSING_TIMESTAMP",
    "STATUS_OK",
    "STATUS_WARMING_UP",
    "WINDOW_STATUSES",
    "WindowBuilder",
    "WindowSpec",
    "Windows",
    "check_columns",
    "fit_spec",
    "infer_gap_tolerance",
    "parse_timestamps",
    "resample_step",
    "resolve_channels",
]

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
_POS = "__window_pos"  # position of a row in its segment (0 = segment start)
_INITIAL = "__window_initial"  # whether the row's segment is its entity's first
_ROW = "__window_row"  # input position of a new row; -1 for rows carried from a batch
_CARRIED = "__window_carried"


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


class WindowBuilder:
    """Builds windows batch by batch, carrying each entity's tail to the next batch."""

    def __init__(self, spec: WindowSpec):
        self.spec = spec
        self._level_positions = [
            i for i, c in enumerate(spec.channels) if c not in spec.slow_channels
        ]
        self._tail: pd.DataFrame | None = None
        self._grid: dict[tuple[Any, ...], GridTail] = {}

    def transform(self, frame: pd.DataFrame, source: str = "input", stride: int = 1) -> Windows:
        """Windows of the rows of ``frame``; ``stride`` > 1 keeps every stride-th window."""
        new = self._new_rows(frame, source)
        status = np.full(len(new), STATUS_OK, dtype=object)
        clean = self._kept_rows(new, status)
        codes = self._entity_codes(clean)
        entity_start = np.r_[True, codes[1:] != codes[:-1]] if len(clean) else np.zeros(0, bool)
        steps = steps_between_rows(clean, self.spec.timestamp_column, ())
        gap = np.zeros(len(clean), dtype=bool)
        if self.spec.gap_tolerance is not None:
            gap = ~entity_start & (steps > self.spec.gap_tolerance)
        segment_start = entity_start | gap
        if self.spec.resample is not None:
            return self._transform_resampled(clean, codes, segment_start, status, stride)
        return self._transform_rows(clean, codes, entity_start, segment_start, status, stride)

    def _new_rows(self, frame: pd.DataFrame, source: str) -> pd.DataFrame:
        """The batch's key and channel columns, converted, with the builder's bookkeeping."""
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
        new[_ROW] = np.arange(len(new))
        new[_CARRIED] = False
        new[_POS] = 0
        new[_INITIAL] = True
        return new

    def _kept_rows(self, new: pd.DataFrame, status: np.ndarray) -> pd.DataFrame:
        """Rules 1-3: carried and new rows sorted per entity by time, without the rows
        that have no timestamp, copies and late rows (their statuses set in ``status``)."""
        spec = self.spec
        tail = self._tail
        combined = new if tail is None or tail.empty else pd.concat([tail, new], ignore_index=True)
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
        return ordered.loc[~duplicate & ~late].reset_index(drop=True)

    def _transform_rows(
        self,
        clean: pd.DataFrame,
        codes: np.ndarray,
        entity_start: np.ndarray,
        segment_start: np.ndarray,
        status: np.ndarray,
        stride: int,
    ) -> Windows:
        """Rule 5: the window of a new row is the ``length`` rows of its segment ending at it."""
        spec = self.spec
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
        tolerance = None if spec.gap_tolerance is None else int(round(spec.gap_tolerance * 1e9))
        grid = TimeGrid(
            int(resample_step(str(spec.resample)).value), tolerance, spec.length, stride
        )
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
            entity = grid.entity(
                times[first:stop],
                raw_segment[first:stop],
                values[first:stop],
                is_new[first:stop],
                self._grid.get(key),
            )
            status[rows_new[first + entity.warming_up]] = STATUS_WARMING_UP
            status[rows_new[first + entity.after_gap]] = STATUS_AFTER_GAP
            ends.append(entity.ends + offset)
            scored.append(first + entity.scored)
            grid_values.append(entity.values)
            offset += len(entity.values)
            if entity.tail is not None:
                self._grid[key] = entity.tail
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
        return series_codes(clean, self.spec.entity_columns)

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
        levels = stacked[:, :, self._level_positions]
        parts = [levels.reshape(len(ends), length * levels.shape[2])]
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
