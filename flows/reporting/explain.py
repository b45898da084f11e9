"""What makes each top anomaly anomalous, in numbers an operator can check.

For each top row: its score split into parts that add up to it (each contributing column's
share of the reconstruction error, scaled to the score, the KL term as its own part, and
the rest of the columns), and for each contributing column the row's value beside the
training median and 5-95% range (numeric) or the level's frequency in training
(categorical), with the model's reconstruction when it was computed. Severity is the
score's percentile among the reference scores the threshold was fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flows.reporting.drift import RARE_SHARE
from flows.reporting.formatting import (
    DASH,
    carried_columns,
    cell_text,
    contributions,
    feature_ranks,
    is_finite,
    json_value,
)
from flows.reporting.profile_view import column_profile, quantile, training_n_rows

__all__ = [
    "KL_SENTENCE",
    "MAX_EXPLAINED",
    "Part",
    "RowExplanation",
    "explain_rows",
    "score_parts",
    "severity",
    "severity_text",
]

#: Rows explained in detail; the table lists all top rows.
MAX_EXPLAINED = 10
#: What the KL part means, in a sentence.
KL_SENTENCE = (
    "The KL part measures how unusual the combination of values is as a whole: the row "
    "sits where the model saw few training rows, even if each value alone is ordinary."
)


def severity(score: float, reference_quantiles: Mapping[str, float]) -> float | None:
    """Percentile (0-100) of ``score`` among the reference scores, interpolated between
    their quantiles (``{"q0.5": ...}``); ``None`` without quantiles or a finite score."""
    if not is_finite(score):
        return None
    points = []
    for name, value in reference_quantiles.items():
        try:
            level = float(str(name).lstrip("q"))
        except ValueError:
            continue
        if is_finite(value) and 0 <= level <= 1:
            points.append((float(value), level))
    if not points:
        return None
    points.sort()
    values = np.array([p[0] for p in points])
    levels = np.array([p[1] for p in points])
    if score >= values[-1]:
        return 100.0 * levels[-1]
    if score <= values[0]:
        return 100.0 * levels[0]
    return float(100.0 * np.interp(score, values, levels))


def severity_text(percentile: float | None, reference_quantiles: Mapping[str, float]) -> str:
    """``p97.3``; ``above p99.9`` past the highest reference quantile."""
    if percentile is None:
        return DASH
    top = max((float(str(k).lstrip("q")) for k in reference_quantiles if _is_level(k)), default=1)
    if percentile >= 100 * top:
        return f"above p{100 * top:g}"
    return f"p{percentile:.1f}"


def _is_level(name: object) -> bool:
    try:
        float(str(name).lstrip("q"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Part:
    """One part of a row's score and, for a column, what the row held there."""

    name: str  # a column, "KL (combination of values)" or "other columns"
    share: float | None  # of the score
    kind: str = "column"  # column | kl | rest
    value: str = DASH
    median: str = DASH
    typical: str = DASH  # training 5-95% range, or the level's training frequency
    expected: str = DASH  # the model's reconstruction


@dataclass(frozen=True)
class RowExplanation:
    rank: int
    label: str
    score: float
    severity: str
    parts: tuple[Part, ...]
    sentence: str


def score_parts(row: pd.Series, ranks: Sequence[int]) -> tuple[list[tuple[str, float]], float]:
    """``([(column, share of score)], kl share)`` of one top row; shares of the
    reconstruction error are scaled by ``recon_error / score`` so that all parts, with the
    remaining columns, add up to 1."""
    score = float(row.get("score", math.nan))
    recon = float(row.get("recon_error", math.nan))
    if not (math.isfinite(score) and score > 0 and math.isfinite(recon)):
        return [], math.nan
    scale = max(0.0, min(1.0, recon / score))
    columns = [(name, share * scale) for name, share in contributions(row, ranks) if share]
    return columns, 1.0 - scale


def _number(value: Any) -> str:
    return f"{float(value):.4g}" if is_finite(value) else cell_text(value)


def _categorical_typical(column: Mapping[str, Any], value: Any, n_rows: int | None) -> str:
    levels = column.get("levels") or {}
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        share = column.get("missing_share")
        return f"missing in {float(share):.1%} of training rows" if is_finite(share) else DASH
    count = levels.get(str(value))
    if count is None:
        if column.get("other_count"):
            return "not among the training's most frequent levels"
        return "never seen in training"
    if not n_rows:
        return f"{int(count):,} training rows"
    share = int(count) / n_rows
    rare = " (rare)" if share <= RARE_SHARE else ""
    return f"{int(count):,} of {n_rows:,} training rows ({share:.2%}){rare}"


def _column_part(
    name: str,
    share: float,
    values: pd.Series | None,
    expected: pd.Series | None,
    profile: Mapping[str, Any] | None,
) -> Part:
    value = values.get(name) if values is not None and name in values.index else None
    column = column_profile(profile, name)
    # A boolean as its level is named in training and in the reconstruction: True/False.
    plain = json_value(value)
    shown = str(plain) if isinstance(plain, bool) else cell_text(value)
    part = {"value": DASH if values is None else shown}
    if column is not None and column.get("kind") == "numeric":
        median, low, high = (quantile(column, q) for q in ("0.5", "0.05", "0.95"))
        part["value"] = DASH if values is None else _number(value)
        part["median"] = _number(median) if median is not None else DASH
        if low is not None and high is not None:
            part["typical"] = f"{low:.4g} \u2013 {high:.4g}"
    elif column is not None:
        part["typical"] = _categorical_typical(column, value, training_n_rows(profile))
    if expected is not None and name in expected.index:
        guess = expected[name]
        part["expected"] = _number(guess) if is_finite(guess) else cell_text(guess)
    return Part(name=name, share=share, **part)


def _sentence(columns: list[tuple[str, float]], kl: float) -> str:
    if not columns and not math.isfinite(kl):
        return "No breakdown of this score is available."
    named = ", ".join(f"{name} ({share:.0%})" for name, share in columns[:3])
    text = f"Mostly {named} of the score" if named else "No single column stands out"
    if math.isfinite(kl) and kl >= 0.005:
        text += f"; {kl:.0%} comes from the unusual combination of values (KL)"
    return text + "."


def explain_rows(
    top: pd.DataFrame,
    values: pd.DataFrame | None = None,
    expected: pd.DataFrame | None = None,
    profile: Mapping[str, Any] | None = None,
    reference_quantiles: Mapping[str, float] | None = None,
    limit: int = MAX_EXPLAINED,
) -> list[RowExplanation]:
    """Explanations of the first ``limit`` rows of ``top`` (sorted, highest score first).

    ``values`` and ``expected`` hold the rows' feature values and the model's
    reconstructions, row for row with ``top`` (None where unknown)."""
    ranks = feature_ranks(top)
    carried = carried_columns(top)
    quantiles = reference_quantiles or {}
    found = []
    for rank, (_, row) in enumerate(top.head(limit).iterrows(), start=1):
        row_values = values.iloc[rank - 1] if values is not None and len(values) >= rank else None
        row_expected = (
            expected.iloc[rank - 1] if expected is not None and len(expected) >= rank else None
        )
        columns, kl = score_parts(row, ranks)
        parts = [_column_part(n, s, row_values, row_expected, profile) for n, s in columns]
        if math.isfinite(kl):
            parts.append(Part(name="KL (combination of values)", share=kl, kind="kl"))
            rest = 1.0 - kl - sum(s for _, s in columns)
            if rest > 0.0005:
                parts.append(Part(name="other columns", share=rest, kind="rest"))
        score = float(row["score"]) if is_finite(row.get("score")) else math.nan
        label = ", ".join(f"{c} = {cell_text(row[c])}" for c in carried if c != "row")
        found.append(
            RowExplanation(
                rank=rank,
                label=label or f"row {rank}",
                score=score,
                severity=severity_text(severity(score, quantiles), quantiles),
                parts=tuple(parts),
                sentence=_sentence(columns, kl),
            )
        )
    return found
