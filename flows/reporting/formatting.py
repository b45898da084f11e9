"""How the report writes numbers, shares, table cells and JSON values.

Shared by the HTML page, the Markdown summary and the table artifact, so the three agree on
every figure. Nothing here escapes: the HTML template escapes on output, the Markdown
renderer with its own rule.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DASH",
    "SCORE_COLUMNS",
    "carried_columns",
    "cell_text",
    "contributions",
    "feature_ranks",
    "fmt_count",
    "fmt_num",
    "fmt_pct",
    "fmt_ratio",
    "fmt_share",
    "is_finite",
    "json_value",
    "png_data_uri",
    "sorted_top",
]

#: Shown where a value is missing.
DASH = "\u2014"
#: Columns of a scored frame that hold scores; ``top_feature_*`` hold contributions.
SCORE_COLUMNS = ("recon_error", "kl", "score", "is_anomaly")


def is_finite(value: Any) -> bool:
    """Whether ``value`` reads as a finite number (text and ``None`` do not)."""
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_count(value: int) -> str:
    """A row count with thousands separators: ``12,345``."""
    return f"{int(value):,}"


def fmt_num(value: Any) -> str:
    """A score or threshold to four significant digits, ``n/a`` when not finite."""
    return f"{float(value):.4g}" if is_finite(value) else "n/a"


def fmt_pct(value: Any) -> str:
    """A rate as a percentage; three decimals below 0.1% so small rates do not read as 0."""
    if not is_finite(value):
        return "n/a"
    value = float(value)
    if value == 0:
        return "0%"
    return f"{value:.3%}" if abs(value) < 0.001 else f"{value:.2%}"


def fmt_share(value: Any) -> str:
    """A feature's share of the reconstruction error: ``55.0%``."""
    return f"{float(value):.1%}" if is_finite(value) else "n/a"


def fmt_ratio(value: float | None) -> str:
    """Observed / expected alert rate: ``1.25×``, ``∞``, or ``n/a`` when undefined."""
    if value is None:
        return "n/a"
    return "\u221e" if math.isinf(value) else f"{value:.2f}\u00d7"


def _is_missing(value: Any) -> bool:
    if np.ndim(value) != 0:
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _finite_or_none(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


#: How :func:`json_value` turns a (non-missing) value of each type into JSON, first match
#: wins: ``pd.Timestamp`` is a ``datetime``, so the order matters.
_JSON_CONVERSIONS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (np.bool_, bool),
    ((int, np.integer), int),
    ((float, np.floating, Decimal), _finite_or_none),
    (np.datetime64, lambda value: pd.Timestamp(value).isoformat()),
    ((datetime, date, pd.Timestamp), lambda value: value.isoformat()),
    ((np.timedelta64, pd.Timedelta), lambda value: str(pd.Timedelta(value))),
    (bytes, lambda value: value.decode("utf-8", errors="replace")),
)


def json_value(value: Any) -> Any:
    """A JSON-serialisable Python value: numpy/pandas scalars unwrapped, times as ISO text,
    missing and non-finite numbers as ``None``."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if _is_missing(value):
        return None
    for types, convert in _JSON_CONVERSIONS:
        if isinstance(value, types):
            return convert(value)
    if isinstance(value, np.generic):
        return json_value(value.item())
    return str(value)


def cell_text(value: Any) -> str:
    """Display text of one table cell (not yet escaped)."""
    plain = json_value(value)
    if plain is None:
        return DASH
    if isinstance(plain, bool):
        return "yes" if plain else "no"
    if isinstance(plain, float):
        return f"{plain:.6g}"
    return str(plain)


def png_data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI, the only kind of image the page's policy allows."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def sorted_top(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The top anomalies, highest score first (stable, so ties keep the flow's order)."""
    if frame is None or frame.empty:
        return pd.DataFrame() if frame is None else frame
    if "score" in frame.columns:
        frame = frame.sort_values("score", ascending=False, kind="stable", na_position="last")
    return frame.reset_index(drop=True)


def contributions(row: pd.Series, ranks: Iterable[int]) -> list[tuple[str, float | None]]:
    """``(feature, share)`` of each ``top_feature_k`` the row names; share ``None`` when
    not finite."""
    found = []
    for k in ranks:
        name = row.get(f"top_feature_{k}")
        if name is None or (np.ndim(name) == 0 and pd.isna(name)):
            continue
        share = row.get(f"top_feature_{k}_share")
        found.append((str(name), float(share) if is_finite(share) else None))
    return found


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
