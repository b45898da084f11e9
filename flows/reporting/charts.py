"""Charts of the batch anomaly report, rendered to PNG bytes.

Everything here uses matplotlib's object-oriented API with the Agg canvas directly: no
``pyplot``, so no global figure registry, no GUI backend and nothing left open between
calls (safe in Prefect task threads and in headless workers). Every function accepts the
degenerate inputs a real run produces (no rows scored, one distinct score, one entity, a
threshold outside the observed range) and still returns a valid PNG that says what is missing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Most panels drawn by :func:`score_over_time_png`; further entities are left out (and said so).
MAX_PANELS = 12
#: Most anomalies drawn by :func:`top_features_png`; the HTML table lists them all.
MAX_BARS = 25
#: Points of the score line kept per panel; flagged points are always all drawn.
MAX_LINE_POINTS = 20_000
MAX_LABEL_CHARS = 36

SCORE_COLUMNS = ("recon_error", "kl", "score", "is_anomaly")
THRESHOLD_COLOR = "#c0392b"
FLAG_COLOR = "#d62728"
LINE_COLOR = "#1f77b4"
OTHER_COLOR = "#d9d9d9"
_DPI = 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def _message(ax, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        transform=ax.transAxes,
        fontsize=12,
        color="#555555",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _finite_threshold(threshold: float | None) -> float | None:
    try:
        value = float(threshold)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def truncate(text: object, limit: int = MAX_LABEL_CHARS) -> str:
    """``str(text)`` cut to ``limit`` characters with an ellipsis."""
    value = str(text)
    return value if len(value) <= limit else value[: limit - 1] + "\u2026"


def score_histogram_png(
    scores: Sequence[float] | np.ndarray, threshold: float | None, title: str = "Scores"
) -> bytes:
    """Histogram of ``scores`` (log-scaled counts) with the threshold as a labelled line."""
    values = np.asarray(scores, dtype=float).ravel()
    finite = values[np.isfinite(values)]
    dropped = len(values) - len(finite)
    limit = _finite_threshold(threshold)
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.add_subplot()
    suffix = f" ({len(finite):,} scores" + (
        f", {dropped:,} non-finite left out)" if dropped else ")"
    )
    ax.set_title(truncate(title, 80) + suffix, fontsize=11)
    if not len(finite):
        _message(ax, "no scores to plot")
        return _png(fig)
    low, high = float(finite.min()), float(finite.max())
    if limit is not None:
        low, high = min(low, limit), max(high, limit)
    # A few extreme scores would squeeze everything else into one bin: cut the axis after
    # the bulk (and the threshold) and say how many scores lie beyond it.
    bulk = float(np.quantile(finite, 0.999))
    if limit is not None:
        bulk = max(bulk, limit)
    cut = bulk + 0.5 * (bulk - low)
    beyond = 0
    if bulk > low and high > bulk + 4.0 * (bulk - low):
        beyond = int(np.sum(finite > cut))
        high = cut
    if high - low <= 1e-12 * max(1.0, abs(high)):
        pad = max(abs(high) * 0.05, 0.5)
        low, high = low - pad, high + pad
    edges = np.histogram_bin_edges(finite, bins="auto", range=(low, high))
    if len(edges) > 121:
        edges = np.linspace(low, high, 121)
    elif np.ptp(finite) == 0:  # one distinct score: a narrow bar, not one full-width bin
        edges = np.linspace(low, high, 41)
    ax.hist(finite[finite <= high], bins=edges, color=LINE_COLOR, alpha=0.85, label="scores")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    xlabel = "score"
    if beyond:
        xlabel += f" ({beyond:,} scores beyond the axis, up to {float(finite.max()):.4g})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows (log scale)")
    if limit is not None:
        above = int(np.sum(finite > limit))
        ax.axvline(
            limit,
            color=THRESHOLD_COLOR,
            linestyle="--",
            linewidth=1.8,
            label=f"threshold {limit:.4g} ({above:,} above)",
        )
    ax.legend(loc="upper right", fontsize=9, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def training_histogram_png(
    scores: Sequence[float] | np.ndarray,
    threshold: float | None,
    title: str = "Validation scores",
) -> bytes:
    """The score histogram, for the training flow's holdout scores."""
    return score_histogram_png(scores, threshold, title)


def feature_ranks(frame: pd.DataFrame) -> list[int]:
    """The ``k`` of every ``top_feature_k`` column present, in order."""
    ranks = []
    for column in frame.columns:
        name = str(column)
        if name.startswith("top_feature_") and name[len("top_feature_") :].isdigit():
            ranks.append(int(name[len("top_feature_") :]))
    return sorted(ranks)


def carried_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of a scored frame that are neither scores nor contributions (keys, times)."""
    return [
        c for c in frame.columns if c not in SCORE_COLUMNS and not str(c).startswith("top_feature_")
    ]


def row_label(row: pd.Series, rank: int, carried: Sequence[str]) -> str:
    values = [str(row[c]) for c in carried if not pd.isna(row[c])]
    return truncate(f"#{rank} " + ", ".join(values) if values else f"#{rank}")


def _feature_colors(names: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors + colormaps["tab20b"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def top_features_png(top_anomalies: pd.DataFrame, max_rows: int = MAX_BARS) -> bytes:
    """Stacked horizontal bars: each top anomaly's score share per contributing feature.

    One bar per anomaly (highest score on top), one segment per ``top_feature_k`` with its
    share of the reconstruction error, the remainder in grey. A feature keeps its colour in
    every bar, so a feature that drives many anomalies stands out.
    """
    frame = top_anomalies if top_anomalies is not None else pd.DataFrame()
    ranks = feature_ranks(frame)
    rows = frame.head(max_rows)
    height = 1.6 + 0.36 * max(len(rows), 3)
    fig = Figure(figsize=(10, height), layout="constrained")
    ax = fig.add_subplot()
    title = "Contributing features of the top anomalies (share of reconstruction error)"
    if len(frame) > len(rows):
        title += f"; first {len(rows)} of {len(frame)}"
    ax.set_title(title, fontsize=11)
    if rows.empty or not ranks:
        _message(ax, "no anomalies to show" if rows.empty else "no feature contributions")
        return _png(fig)
    carried = carried_columns(rows)
    names: list[str] = []
    for k in ranks:
        for value in rows[f"top_feature_{k}"]:
            if not pd.isna(value) and str(value) not in names:
                names.append(str(value))
    colors = _feature_colors(names)
    positions = np.arange(len(rows))[::-1]  # first (highest score) row at the top
    labels = []
    used: set[str] = set()
    for pos, (rank, (_, row)) in zip(positions, enumerate(rows.iterrows(), start=1), strict=True):
        labels.append(row_label(row, rank, carried))
        left = 0.0
        for k in ranks:
            feature = row[f"top_feature_{k}"]
            share_column = f"top_feature_{k}_share"
            share = float(row[share_column]) if share_column in rows.columns else float("nan")
            if pd.isna(feature) or not math.isfinite(share) or share <= 0:
                continue
            name = str(feature)
            ax.barh(
                pos,
                share,
                left=left,
                color=colors[name],
                edgecolor="white",
                linewidth=0.6,
                label=None if name in used else truncate(name, 28),
            )
            used.add(name)
            if share >= 0.12:
                ax.text(
                    left + share / 2,
                    pos,
                    truncate(name, max(4, int(share * 40))),
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="black",
                )
            left += share
        if left < 0.999:
            ax.barh(
                pos,
                1.0 - left,
                left=left,
                color=OTHER_COLOR,
                edgecolor="white",
                linewidth=0.6,
                label=None if "\0other" in used else "other features",
            )
            used.add("\0other")
    ax.set_yticks(positions, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of reconstruction error")
    ax.xaxis.set_major_formatter(lambda value, _pos: f"{value:.0%}")
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
        title="feature",
        title_fontsize=8,
    )
    return _png(fig)


def _plain_times(values: pd.Series) -> pd.Series:
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


def _shade_spans(ax: object, spans: pd.DataFrame | None, entity: object, by_position: bool) -> None:
    if spans is None or spans.empty or by_position:
        return
    names = spans["entity"].astype(object).where(spans["entity"].notna(), "(missing)")
    part = spans if entity is None else spans[(names == entity).to_numpy()]
    starts, ends = _plain_times(part["start"]), _plain_times(part["end"])
    if starts is None or ends is None:
        return
    for start, end in zip(starts, ends, strict=True):
        ax.axvspan(start, end, color=FLAG_COLOR, alpha=0.2, linewidth=0)


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
    limit = _finite_threshold(threshold)
    needed = {"timestamp", "score"}
    if frame.empty or not needed <= set(frame.columns):
        fig = Figure(figsize=(10, 3), layout="constrained")
        _message(fig.add_subplot(), "no time series to plot")
        return _png(fig)
    frame = frame.copy()
    times = _plain_times(frame["timestamp"])
    by_position = times is None
    frame["timestamp"] = np.arange(len(frame)) if by_position else times
    frame["score"] = pd.to_numeric(frame["score"], errors="coerce")
    if "is_anomaly" in frame.columns:
        frame["is_anomaly"] = frame["is_anomaly"].fillna(False).astype(bool)
    else:
        frame["is_anomaly"] = (frame["score"] > limit) if limit is not None else False
    frame = frame[frame["timestamp"].notna() & np.isfinite(frame["score"].to_numpy(float))]
    by_entity = entity_column is not None and entity_column in frame.columns
    if by_entity:
        frame[entity_column] = (
            frame[entity_column].astype(object).where(frame[entity_column].notna(), "(missing)")
        )
        entities = _entity_order(frame, entity_column) if len(frame) else []
    else:
        entities = [None]
    shown = entities[:max_panels]
    n_panels = max(len(shown), 1)
    ncols = 1 if n_panels <= 4 else 2 if n_panels <= 8 else 3
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(11, 1.2 + 2.3 * nrows), layout="constrained")
    share = _overlapping_times(frame, entity_column, shown) if by_entity else True
    axes = fig.subplots(nrows, ncols, sharex=share, squeeze=False).ravel()
    title = "Score over time"
    if len(entities) > len(shown):
        title += (
            f" ({len(shown)} of {len(entities)} {entity_column} values shown: most flagged first)"
        )
    fig.suptitle(title, fontsize=11)
    if by_position:
        fig.supxlabel("row order (the timestamp column could not be read as times)", fontsize=9)
    if frame.empty:
        _message(axes[0], "no time series to plot")
        for ax in axes[1:]:
            ax.set_visible(False)
        return _png(fig)
    for ax, entity in zip(axes, shown, strict=False):
        part = frame if entity is None else frame[frame[entity_column] == entity]
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
        if entity is not None:
            ax.set_title(truncate(f"{entity_column} = {entity}", 60), fontsize=9)
        ax.set_ylabel("score", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    for index in range(len(shown), len(axes)):
        axes[index].set_visible(False)
        if index - ncols >= 0:  # the panel above is now its column's lowest: label its x axis
            axes[index - ncols].xaxis.set_tick_params(labelbottom=True)
    for ax in axes[: len(shown)]:
        for tick in ax.get_xticklabels():
            tick.set_rotation(20)
            tick.set_horizontalalignment("right")
    return _png(fig)
