"""Drift of the scored input from the training data, column by column.

Counted batch by batch against the training profile, so memory does not grow with the
input: numeric values fall into the profile's ten quantile bins (plus a bucket for missing
and one for non-finite values), categorical levels into the profile's levels (plus the
training's "other" levels and missing). The figure is the population stability index,
``sum((now - train) * ln(now / train))`` over the buckets; for categorical columns also the
share of rows whose level was never seen (or rare) in training, and for every column the
change in the missing share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flows.reporting.profile_view import profile_columns, training_n_rows
from vae_core.profile import psi as share_psi

__all__ = [
    "PSI_LARGE",
    "PSI_MODERATE",
    "ColumnDrift",
    "DriftCounter",
    "drift_note",
    "psi",
]

#: Conventional reading of the PSI: below 0.1 stable, 0.1-0.25 a moderate shift, above 0.25
#: a large one.
PSI_MODERATE = 0.1
PSI_LARGE = 0.25
#: A level seen in at most this share of training rows is rare.
RARE_SHARE = 0.001


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same buckets (counts or
    shares; each is normalised); NaN when either is empty."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.sum() <= 0 or a.sum() <= 0:
        return math.nan
    return share_psi(e / e.sum(), a / a.sum())  # the one formula, floors included


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    psi: float
    missing_train: float
    missing_now: float
    rows: int
    #: Categorical: share of rows (with a value) whose level training never had among its
    #: levels, and whose level was rare or unseen, now and in training.
    unseen_now: float | None = None
    rare_now: float | None = None
    rare_train: float | None = None

    @property
    def missing_change(self) -> float:
        return self.missing_now - self.missing_train

    @property
    def level(self) -> str:
        if not math.isfinite(self.psi):
            return "n/a"
        return "large" if self.psi >= PSI_LARGE else "moderate" if self.psi >= PSI_MODERATE else ""


def _share(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


class _Numeric:
    def __init__(self, spec: Mapping[str, Any]):
        self.edges = np.asarray(spec.get("bin_edges") or [], dtype=float)
        shares = np.asarray(spec.get("bin_shares") or [], dtype=float)
        missing, non_finite = (
            _share(spec.get("missing_share")),
            _share(spec.get("non_finite_share")),
        )
        finite = max(0.0, 1.0 - missing - non_finite)
        self.train = np.concatenate([shares * finite, [missing, non_finite]])
        self.counts = np.zeros(len(shares) + 2)

    def add(self, series: pd.Series) -> None:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(values)
        finite = np.isfinite(values)
        n_bins = len(self.counts) - 2
        if n_bins > 0:
            inner = self.edges[1:-1] if len(self.edges) == n_bins + 1 else self.edges[:0]
            bins = np.searchsorted(inner, values[finite], side="right")
            self.counts[:n_bins] += np.bincount(bins, minlength=n_bins)[:n_bins]
        self.counts[-2] += int(missing.sum())
        self.counts[-1] += int((~missing & ~finite).sum())


class _Levels:
    def __init__(self, spec: Mapping[str, Any], n_rows: int | None):
        levels = spec.get("levels") or {}
        self.index = {str(k): i for i, k in enumerate(levels)}
        counts = np.array([float(v) for v in levels.values()])
        other = float(spec.get("other_count") or 0)
        total = float(n_rows) if n_rows else counts.sum() + other
        missing = _share(spec.get("missing_share"))
        scale = (1.0 - missing) / max(counts.sum() + other, 1.0)
        self.train = np.concatenate([counts * scale, [other * scale, missing]])
        self.rare = np.array([c / max(total, 1.0) <= RARE_SHARE for c in counts], dtype=bool)
        present = self.train[:-1].sum()
        rare_train = self.train[:-2][self.rare].sum() + self.train[-2]
        self.rare_train = float(rare_train / present) if present > 0 else 0.0
        self.counts = np.zeros(len(counts) + 2)

    def add(self, series: pd.Series) -> None:
        present = series.dropna()
        self.counts[-1] += len(series) - len(present)
        if not len(present):
            return
        for level, n in present.astype(str).value_counts(sort=False).items():
            self.counts[self.index.get(str(level), len(self.counts) - 2)] += int(n)

    def shares(self) -> tuple[float, float]:
        present = self.counts[:-1].sum()
        if present <= 0:
            return 0.0, 0.0
        unseen = self.counts[-2] / present
        rare = (self.counts[:-2][self.rare].sum() + self.counts[-2]) / present
        return float(unseen), float(rare)


class DriftCounter:
    """Counts of the scored input in the profile's buckets, added batch by batch."""

    def __init__(self, profile: Mapping[str, Any], columns: list[str] | None = None):
        n_rows = training_n_rows(profile)
        self.rows = 0
        self.columns: dict[str, tuple[str, _Numeric | _Levels]] = {}
        for name, spec in profile_columns(profile).items():
            if columns is not None and name not in columns:
                continue
            kind = str(spec.get("kind", ""))
            counter = _Numeric(spec) if kind == "numeric" else _Levels(spec, n_rows)
            self.columns[name] = (kind, counter)

    def add(self, frame: pd.DataFrame) -> None:
        self.rows += len(frame)
        for name, (_, counter) in self.columns.items():
            if name in frame.columns:
                counter.add(frame[name])

    def result(self) -> list[ColumnDrift]:
        """Every column's drift, largest PSI first."""
        found = []
        for name, (kind, counter) in self.columns.items():
            total = counter.counts.sum()
            missing_now = (
                float(counter.counts[-2 if kind == "numeric" else -1] / total) if total else 0.0
            )
            missing_train = float(counter.train[-2 if kind == "numeric" else -1])
            extra: dict[str, float] = {}
            if isinstance(counter, _Levels):
                unseen, rare = counter.shares()
                extra = {"unseen_now": unseen, "rare_now": rare, "rare_train": counter.rare_train}
            found.append(
                ColumnDrift(
                    column=name,
                    kind=kind,
                    psi=psi(counter.train, counter.counts),
                    missing_train=missing_train,
                    missing_now=missing_now,
                    rows=int(total),
                    **extra,
                )
            )
        return sorted(found, key=lambda d: (-(d.psi if math.isfinite(d.psi) else -1), d.column))


def drift_note(drift: list[ColumnDrift]) -> str | None:
    """A warning when drift is large enough to question the alert rate, else ``None``."""
    large = [d.column for d in drift if math.isfinite(d.psi) and d.psi >= PSI_LARGE]
    if not large:
        return None
    names = ", ".join(large[:5]) + (f" and {len(large) - 5} more" if len(large) > 5 else "")
    return (
        f"{len(large)} column(s) drifted strongly from the training data (PSI \u2265 "
        f"{PSI_LARGE:g}): {names}. The alert rate may reflect this change in the input rather "
        "than more anomalies; check the input before acting on it, and consider retraining."
    )
