"""The score over time: one panel per entity, flagged points in red, flagged spans shaded."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from flows.reporting.charts._canvas import (
    FLAG_COLOR,
    LINE_COLOR,
    THRESHOLD_COLOR,
    finite_threshold,
    message,
    png,
    truncate,
)

#: Most panels drawn by :func:`score_over_time_png`; further entities are left out (and said so).
MAX_PANELS = 12
#: Points of the score line kept per panel; flagged points are always all drawn.
MAX_LINE_POINTS = 20_000
#: Times outside these years are sentinels (9999-12-31, 1970-01-01 of an unset clock is
#: inside): drawn, they squeeze the real series into a sliver or fall outside the years
#: matplotlib can draw. They are left out, and the chart says how many.
FIRST_YEAR, LAST_YEAR = 1900, 2200


def _plain_times(values: pd.Series) -> pd.Series | None:
    """Values matplotlib plots on a continuous axis: tz-aware timestamps as naive UTC, text
    parsed as timestamps (or numbers); ``None`` when they are neither (plot by position)."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values):
        if pd.api.types.is_bool_dtype(values):
            return None
        return values
    present = values.notna().sum()
    converted = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    if converted.notna().sum() == present:
        return converted.dt.tz_localize(None)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().sum() == present:
        return numbers
    return None


def _in_range(times: pd.Series) -> pd.Series:
    """Whether each time lies within ``FIRST_YEAR``-``LAST_YEAR`` (missing ones do not)."""
    if not pd.api.types.is_datetime64_any_dtype(times):
        return times.notna()
    years = times.dt.year
    return (years >= FIRST_YEAR) & (years <= LAST_YEAR)


def _entity_order(frame: pd.DataFrame, entity_column: str) -> list:
    """Entities with the most flagged points first, then the highest score."""
    stats = frame.groupby(entity_column, sort=False, dropna=False).agg(
        flagged=("is_anomaly", "sum"), peak=("score", "max")
    )
    stats = stats.sort_values(["flagged", "peak"], ascending=False, kind="stable")
    return list(stats.index)


def _thin(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    if len(frame) <= limit:
        return frame
    step = math.ceil(len(frame) / limit)
    return frame.iloc[::step]


def _overlapping_times(frame: pd.DataFrame, entity_column: str, shown: list) -> bool:
    """Share the time axis only when every shown series overlaps all others in time:
    devices recorded on different days would each be squeezed into a sliver."""
    part = frame[frame[entity_column].isin(shown)]
    if part.empty:
        return True
    spans = part.groupby(entity_column, dropna=False)["timestamp"].agg(["min", "max"])
    return bool(spans["min"].max() <= spans["max"].min())


def _shade_spans(ax: Axes, spans: pd.DataFrame | None, entity: object, by_position: bool) -> None:
    if spans is None or spans.empty or by_position:
        return
    names = spans["entity"].astype(object).where(spans["entity"].notna(), "(missing)")
    part = spans if entity is None else spans[(names == entity).to_numpy()]
    starts, ends = _plain_times(part["start"]), _plain_times(part["end"])
    if starts is None or ends is None:
        return
    kept = (_in_range(starts) & _in_range(ends)).to_numpy(bool)
    for start, end in zip(starts[kept], ends[kept], strict=True):
        ax.axvspan(start, end, color=FLAG_COLOR, alpha=0.2, linewidth=0)


def _plot_frame(frame: pd.DataFrame, limit: float | None) -> tuple[pd.DataFrame, bool, int]:
    """``(frame, by_position, n_out)``: plottable times (row order when the timestamps
    cannot be read, or none lies in range), numeric scores, a boolean flag; rows without a
    time or a finite score dropped, and ``n_out`` rows with a time out of range."""
    frame = frame.copy()
    times = _plain_times(frame["timestamp"])
    n_out = 0
    if times is not None:
        inside = _in_range(times)
        if not inside.any():
            times = None
        else:
            n_out = int((~inside & times.notna()).sum())
            times = times.where(inside)
    by_position = times is None
    frame["timestamp"] = np.arange(len(frame)) if by_position else times
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    if "is_anomaly" in frame.columns:
        frame["is_anomaly"] = frame["is_anomaly"].fillna(False).astype(bool)
    else:
        frame["is_anomaly"] = (frame["score"] > limit) if limit is not None else False
    frame = frame[frame["timestamp"].notna() & np.isfinite(frame["score"].to_numpy(float))]
    return frame, by_position, n_out


def _entities(
    frame: pd.DataFrame, entity_column: str | None
) -> tuple[pd.DataFrame, list, str | None]:
    """``(frame, entities, column)``: one panel per entity of ``column`` (missing ones
    named), most flagged first; one panel of everything, and no column, when the frame has
    no entity column."""
    if entity_column is None or entity_column not in frame.columns:
        return frame, [None], None
    frame[entity_column] = (
        frame[entity_column].astype(object).where(frame[entity_column].notna(), "(missing)")
    )
    entities = _entity_order(frame, entity_column) if len(frame) else []
    return frame, entities, entity_column


def _draw_panel(
    ax: Axes,
    part: pd.DataFrame,
    limit: float | None,
    spans: pd.DataFrame | None,
    entity: object,
    by_position: bool,
) -> None:
    part = part.sort_values("timestamp", kind="stable")
    line = _thin(part, MAX_LINE_POINTS)
    ax.plot(line["timestamp"], line["score"], color=LINE_COLOR, linewidth=0.9)
    flagged = part[part["is_anomaly"]]
    if len(flagged):
        ax.scatter(
            flagged["timestamp"],
            flagged["score"],
            color=FLAG_COLOR,
            s=14,
            zorder=3,
            label=f"flagged ({len(flagged):,})",
        )
    _shade_spans(ax, spans, entity, by_position)
    if limit is not None:
        ax.axhline(
            limit,
            color=THRESHOLD_COLOR,
            linestyle="--",
            linewidth=1.2,
            label=f"threshold {limit:.4g}",
        )


def _style_panel(ax: Axes, title: str | None) -> None:
    if title is not None:
        ax.set_title(truncate(title, 60), fontsize=9)
    ax.set_ylabel("score", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, frameon=False)


def _tidy_grid(axes: np.ndarray, n_shown: int, ncols: int) -> None:
    """Hide the unused panels and slant the time labels of the used ones."""
    for index in range(n_shown, len(axes)):
        axes[index].set_visible(False)
        if index - ncols >= 0:  # the panel above is now its column's lowest: label its x axis
            axes[index - ncols].xaxis.set_tick_params(labelbottom=True)
    for ax in axes[:n_shown]:
        for tick in ax.get_xticklabels():
            tick.set_rotation(20)
            tick.set_horizontalalignment("right")


def _empty_png() -> bytes:
    fig = Figure(figsize=(10, 3), layout="constrained")
    message(fig.add_subplot(), "no time series to plot")
    return png(fig)


def score_over_time_png(
    time_series: pd.DataFrame | None,
    threshold: float | None,
    entity_column: str | None = None,
    max_panels: int = MAX_PANELS,
    spans: pd.DataFrame | None = None,
) -> bytes:
    """Score line over time with flagged points in red; one panel per entity (at most 12).

    ``spans`` (columns entity, start, end) are shaded: the flagged stretches of each series.
    """
    frame = pd.DataFrame() if time_series is None else time_series
    limit = finite_threshold(threshold)
    if frame.empty or not {"timestamp", "score"} <= set(frame.columns):
        return _empty_png()
    frame, by_position, n_out = _plot_frame(frame, limit)
    frame, entities, column = _entities(frame, entity_column)
    shown = entities[:max_panels]
    n_panels = max(len(shown), 1)
    ncols = 1 if n_panels <= 4 else 2 if n_panels <= 8 else 3
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(11, 1.2 + 2.3 * nrows), layout="constrained")
    share = _overlapping_times(frame, column, shown) if column is not None else True
    axes = fig.subplots(nrows, ncols, sharex=share, squeeze=False).ravel()
    title = "Score over time"
    if len(entities) > len(shown):
        title += (
            f" ({len(shown)} of {len(entities)} {truncate(entity_column, 40)} values shown: "
            "most flagged first)"
        )
    fig.suptitle(title, fontsize=11)
    if by_position:
        fig.supxlabel("row order (the timestamp column could not be read as times)", fontsize=9)
    elif n_out:
        fig.supxlabel(
            f"{n_out:,} points with a time before {FIRST_YEAR} or after {LAST_YEAR} "
            "(sentinel values) left out",
            fontsize=9,
        )
    if frame.empty:
        message(axes[0], "no time series to plot")
        for ax in axes[1:]:
            ax.set_visible(False)
        return png(fig)
    for ax, entity in zip(axes, shown, strict=False):
        part = frame if column is None else frame[frame[column] == entity]
        _draw_panel(ax, part, limit, spans, entity, by_position)
        _style_panel(ax, None if entity is None else f"{entity_column} = {entity}")
    _tidy_grid(axes, len(shown), ncols)
    return png(fig)
