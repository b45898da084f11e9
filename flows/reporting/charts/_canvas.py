"""What every chart shares: the PNG canvas, colours, labels and the "nothing to show" panel."""

from __future__ import annotations

import io
import math

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MAX_LABEL_CHARS = 36
THRESHOLD_COLOR = "#c0392b"
FLAG_COLOR = "#d62728"
LINE_COLOR = "#1f77b4"
OTHER_COLOR = "#d9d9d9"
_DPI = 100


def png(fig: Figure) -> bytes:
    """The figure rendered by the Agg canvas (no pyplot, so nothing stays registered)."""
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    return buffer.getvalue()


def message(ax: Axes, text: str) -> None:
    """Write ``text`` in the middle of an empty panel, without ticks."""
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


def finite_threshold(threshold: float | None) -> float | None:
    """The threshold as a float, ``None`` when it is missing or not finite (no line drawn)."""
    try:
        value = float(threshold)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def plain(text: object) -> str:
    """``str(text)`` drawn as written: matplotlib reads ``$...$`` as math (and fails on
    ``$\\foo$``), so every ``$`` is escaped."""
    return str(text).replace("$", "\\$")


def truncate(text: object, limit: int = MAX_LABEL_CHARS) -> str:
    """``str(text)`` cut to ``limit`` characters with an ellipsis, safe as a chart label
    (see :func:`plain`)."""
    value = str(text)
    return plain(value if len(value) <= limit else value[: limit - 1] + "\u2026")
