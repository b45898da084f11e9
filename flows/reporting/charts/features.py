"""Stacked bars of the features that make up each top anomaly's reconstruction error."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from flows.reporting.charts._canvas import OTHER_COLOR, message, png, truncate
from flows.reporting.formatting import carried_columns, feature_ranks

#: Most anomalies drawn by :func:`top_features_png`; the HTML table lists them all.
MAX_BARS = 25
#: Legend key of the grey remainder; not a possible feature name.
_OTHER = "\0other"


def row_label(row: pd.Series, rank: int, carried: Sequence[str]) -> str:
    """``#rank key, time`` for a bar: the row's carried values, cut to fit the axis."""
    values = [str(row[c]) for c in carried if not pd.isna(row[c])]
    return truncate(f"#{rank} " + ", ".join(values) if values else f"#{rank}")


def _feature_colors(names: Sequence[str]) -> dict[str, tuple]:
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors + colormaps["tab20b"].colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def _feature_names(rows: pd.DataFrame, ranks: Sequence[int]) -> list[str]:
    """Every feature named in ``rows``, in order of first appearance (rank by rank)."""
    names: list[str] = []
    for k in ranks:
        for value in rows[f"top_feature_{k}"]:
            if not pd.isna(value) and str(value) not in names:
                names.append(str(value))
    return names


def _segment(
    ax: Axes,
    pos: float,
    left: float,
    share: float,
    color: tuple | str,
    label: str | None,
    name: str | None = None,
) -> None:
    """One stretch of a bar; a wide enough stretch shows the feature's ``name`` inside."""
    ax.barh(pos, share, left=left, color=color, edgecolor="white", linewidth=0.6, label=label)
    if name is not None and share >= 0.12:
        ax.text(
            left + share / 2,
            pos,
            truncate(name, max(4, int(share * 40))),
            ha="center",
            va="center",
            fontsize=7.5,
            color="black",
        )


def _draw_bar(
    ax: Axes,
    pos: float,
    row: pd.Series,
    ranks: Sequence[int],
    colors: dict[str, tuple],
    used: set[str],
) -> None:
    """One anomaly's bar: a segment per contributing feature, the remainder in grey.
    ``used`` holds the legend keys already drawn, so each is labelled once."""
    left = 0.0
    for k in ranks:
        feature = row[f"top_feature_{k}"]
        share_column = f"top_feature_{k}_share"
        share = float(row[share_column]) if share_column in row.index else float("nan")
        if pd.isna(feature) or not math.isfinite(share) or share <= 0:
            continue
        name = str(feature)
        label = None if name in used else truncate(name, 28)
        _segment(ax, pos, left, share, colors[name], label, name)
        used.add(name)
        left += share
    if left < 0.999:
        label = None if _OTHER in used else "other features"
        _segment(ax, pos, left, 1.0 - left, OTHER_COLOR, label)
        used.add(_OTHER)


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
        message(ax, "no anomalies to show" if rows.empty else "no feature contributions")
        return png(fig)
    carried = carried_columns(rows)
    colors = _feature_colors(_feature_names(rows, ranks))
    positions = np.arange(len(rows))[::-1]  # first (highest score) row at the top
    labels = []
    used: set[str] = set()
    for pos, (rank, (_, row)) in zip(positions, enumerate(rows.iterrows(), start=1), strict=True):
        labels.append(row_label(row, rank, carried))
        _draw_bar(ax, pos, row, ranks, colors, used)
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
    return png(fig)
