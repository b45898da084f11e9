"""The last runs side by side: rows, alert rate with its expected band, score quantiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from flows.reporting.charts._canvas import FLAG_COLOR, LINE_COLOR, THRESHOLD_COLOR, png, truncate

__all__ = ["history_png"]


def _numbers(runs: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float)


def _mark_current(ax: Axes, x: np.ndarray, y: np.ndarray, current: np.ndarray) -> None:
    if current.any():
        ax.scatter(x[current], y[current], s=70, facecolors="none", edgecolors=FLAG_COLOR,
                   linewidths=2, zorder=4, label="this run")  # fmt: skip


def _rows_panel(ax: Axes, runs: pd.DataFrame, x: np.ndarray, current: np.ndarray) -> None:
    for column, color in (("rows_in", LINE_COLOR), ("rows_quarantined", "#e0a100")):
        ax.plot(x, _numbers(runs, column), marker="o", markersize=3, color=color,
                label=column.replace("_", " "))  # fmt: skip
    _mark_current(ax, x, _numbers(runs, "rows_in"), current)
    ax.set_ylabel("rows", fontsize=8)


def _rate_panel(
    ax: Axes, runs: pd.DataFrame, x: np.ndarray, current: np.ndarray, band: tuple | None
) -> None:
    rates = _numbers(runs, "alert_rate")
    if band is not None:
        ax.axhspan(band[0], band[1], color="#2ca02c", alpha=0.12, label="expected band")
    ax.plot(x, rates, marker="o", markersize=3, color=LINE_COLOR, label="alert rate")
    _mark_current(ax, x, rates, current)
    ax.yaxis.set_major_formatter(lambda value, _pos: f"{value:.2%}")
    ax.set_ylabel("alert rate", fontsize=8)


def _score_panel(ax: Axes, runs: pd.DataFrame, x: np.ndarray, current: np.ndarray) -> None:
    for column, style in (("score_p50", "-"), ("score_p90", "--"), ("score_p99", ":")):
        ax.plot(x, _numbers(runs, column), linestyle=style, marker="o", markersize=3,
                color=LINE_COLOR, label=column.replace("score_", ""))  # fmt: skip
    ax.plot(x, _numbers(runs, "threshold"), color=THRESHOLD_COLOR, linewidth=1, label="threshold")
    _mark_current(ax, x, _numbers(runs, "score_p99"), current)
    ax.set_ylabel("score", fontsize=8)


def history_png(runs: pd.DataFrame, band: tuple[float, float] | None) -> bytes:
    """Three panels over the runs (oldest left), the current run circled in red."""
    x = np.arange(len(runs))
    current = runs["current"].to_numpy(bool) if "current" in runs else np.zeros(len(x), bool)
    fig = Figure(figsize=(10, 6.4), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True)
    fig.suptitle(f"The last {len(runs)} runs", fontsize=11)
    _rows_panel(axes[0], runs, x, current)
    _rate_panel(axes[1], runs, x, current, band)
    _score_panel(axes[2], runs, x, current)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(loc="upper left", fontsize=7, frameon=False, ncols=4)
    labels = [truncate(str(v)[:10] if pd.notna(v) else "?", 12) for v in runs["run_date"]]
    step = max(1, len(labels) // 15)
    axes[2].set_xticks(x[::step], labels[::step], rotation=30, ha="right")
    axes[2].set_xlim(-0.5, max(len(x) - 0.5, 0.5))
    return png(fig)
