"""The score histogram with the threshold marked (scoring report and training run)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from flows.reporting.charts._canvas import (
    LINE_COLOR,
    THRESHOLD_COLOR,
    finite_threshold,
    message,
    png,
    truncate,
)

#: Most bins drawn; ``bins="auto"`` asks for thousands on a long, smooth sample.
MAX_BINS = 120


def _axis_range(finite: np.ndarray, limit: float | None) -> tuple[float, float, int]:
    """``(low, high, beyond)``: the x range to draw and how many scores lie past ``high``."""
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
    return low, high, beyond


def _bin_edges(finite: np.ndarray, low: float, high: float) -> np.ndarray:
    edges = np.histogram_bin_edges(finite, bins="auto", range=(low, high))
    if len(edges) > MAX_BINS + 1:
        edges = np.linspace(low, high, MAX_BINS + 1)
    elif np.ptp(finite) == 0:  # one distinct score: a narrow bar, not one full-width bin
        edges = np.linspace(low, high, 41)
    return edges


def _threshold_line(ax: Axes, finite: np.ndarray, limit: float) -> None:
    above = int(np.sum(finite > limit))
    ax.axvline(
        limit,
        color=THRESHOLD_COLOR,
        linestyle="--",
        linewidth=1.8,
        label=f"threshold {limit:.4g} ({above:,} above)",
    )


def score_histogram_png(
    scores: Sequence[float] | np.ndarray, threshold: float | None, title: str = "Scores"
) -> bytes:
    """Histogram of ``scores`` (log-scaled counts) with the threshold as a labelled line."""
    values = np.asarray(scores, dtype=float).ravel()
    finite = values[np.isfinite(values)]
    dropped = len(values) - len(finite)
    limit = finite_threshold(threshold)
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.add_subplot()
    suffix = f" ({len(finite):,} scores" + (
        f", {dropped:,} non-finite left out)" if dropped else ")"
    )
    ax.set_title(truncate(title, 80) + suffix, fontsize=11)
    if not len(finite):
        message(ax, "no scores to plot")
        return png(fig)
    low, high, beyond = _axis_range(finite, limit)
    edges = _bin_edges(finite, low, high)
    ax.hist(finite[finite <= high], bins=edges, color=LINE_COLOR, alpha=0.85, label="scores")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.8)
    xlabel = "score"
    if beyond:
        xlabel += f" ({beyond:,} scores beyond the axis, up to {float(finite.max()):.4g})"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows (log scale)")
    if limit is not None:
        _threshold_line(ax, finite, limit)
    ax.legend(loc="upper right", fontsize=9, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return png(fig)


def training_histogram_png(
    scores: Sequence[float] | np.ndarray,
    threshold: float | None,
    title: str = "Validation scores",
) -> bytes:
    """The score histogram, for the training flow's holdout scores."""
    return score_histogram_png(scores, threshold, title)
