"""The columns that drifted most from the training data, as bars of their PSI."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from flows.reporting.charts._canvas import LINE_COLOR, THRESHOLD_COLOR, message, png, truncate
from flows.reporting.drift import PSI_LARGE, PSI_MODERATE, ColumnDrift

__all__ = ["MAX_DRIFT_BARS", "drift_png"]

#: Columns drawn; the table beside the chart lists every column.
MAX_DRIFT_BARS = 12


def drift_png(drift: Sequence[ColumnDrift], max_bars: int = MAX_DRIFT_BARS) -> bytes:
    """Horizontal bars of the PSI of the most drifted columns, the 0.1 and 0.25 marks."""
    shown = [d for d in drift if math.isfinite(d.psi)][:max_bars]
    fig = Figure(figsize=(9, 1.4 + 0.34 * max(len(shown), 3)), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Drift from training: population stability index (PSI)", fontsize=11)
    if not shown:
        message(ax, "no drift figures")
        return png(fig)
    positions = np.arange(len(shown))[::-1]
    values = [d.psi for d in shown]
    colors = [THRESHOLD_COLOR if v >= PSI_LARGE else LINE_COLOR for v in values]
    ax.barh(positions, values, color=colors)
    ax.set_yticks(positions, [truncate(d.column, 30) for d in shown], fontsize=8)
    for mark, style in ((PSI_MODERATE, ":"), (PSI_LARGE, "--")):
        ax.axvline(mark, color="#555555", linestyle=style, linewidth=1, label=f"PSI {mark:g}")
    ax.set_xlim(0, max(max(values) * 1.1, PSI_LARGE * 1.3))
    ax.set_xlabel("PSI (above 0.25: a large shift)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)
