"""Tail evidence of discrete columns: how far out a value lies among few levels
(``DiscreteTails``), and how many of a row's flags sit on their rarer side (``FlagTails``).

A numeric column with a few distinct values in training (3 to ``MAX_LEVELS``: ratings,
small counts, intensities 0-16) is a poor fit for the Gaussian the VAE decodes: ties
flatten what the decoder can tell apart, and a value at the column's extreme level costs
little once the latent code has placed the row there. What such a column does tell is
how rare a value this far out is. Each value gets the two-sided empirical tail
probability of its level in training, ``p = 2 min(P(X <= x), P(X >= x))`` with Laplace's
smoothing, and scoring adds ``WEIGHT * max(0, -log p - OFFSET)`` to that column's term.

Only tails rarer than ``exp(-OFFSET)`` count: without the offset, normal rows collected
a few nats in every column, the held-out scores spread, and the far-out fence flagged
almost nothing on discrete data. Continuous columns keep the Student-t alone: with this
evidence ROC AUC fell on continuous data. Two-valued columns (flags: Bernoulli in the
model, or numbers on data of mostly flags, see ``features``) get no evidence of their own,
which cost one-hot dummies ROC AUC, but the row's flags taken together do (``FlagTails``).
The figures behind each choice are in ``benchmarks/README.md`` (derived sets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Columns with ``MIN_LEVELS`` to ``MAX_LEVELS`` distinct training values get the evidence.
MIN_LEVELS = 3
MAX_LEVELS = 32
#: Nats per nat of surprise beyond ``OFFSET`` nats. Of the weights and offsets that kept
#: the far-out fence's flag F1 on discrete data, 3 and 1 gave the best mean ROC AUC and AP
#: over the four quality benchmarks.
WEIGHT = 3.0
OFFSET = 1.0


def level_table(values: np.ndarray, counts: np.ndarray) -> dict[str, list[float]] | None:
    """A column's distinct values and their training counts (``np.unique``'s, with
    ``return_counts``) as its level table, when the column is discrete.

    None for a column with fewer than ``MIN_LEVELS`` or more than ``MAX_LEVELS`` values,
    or with an infinite value (its level would have no place on the scale).
    """
    if not MIN_LEVELS <= values.size <= MAX_LEVELS or not np.isfinite(values).all():
        return None
    return {
        "discrete_values": [float(v) for v in values],
        "discrete_counts": [float(c) for c in counts],
    }


class DiscreteTails:
    """Per-value tail evidence of the discrete columns among a model's numeric columns."""

    def __init__(self, numeric: Sequence[dict[str, Any]]):
        tables = [(j, col) for j, col in enumerate(numeric) if "discrete_values" in col]
        #: Positions of the discrete columns among the numeric ones, and their names.
        self.positions = [j for j, _ in tables]
        self.names = tuple(col["name"] for _, col in tables)
        self._values = [np.asarray(col["discrete_values"], dtype=np.float64) for _, col in tables]
        self._cumulative = [
            np.concatenate([[0.0], np.cumsum(col["discrete_counts"], dtype=np.float64)])
            for _, col in tables
        ]

    def __bool__(self) -> bool:
        return bool(self.positions)

    def terms(self, raw: np.ndarray) -> np.ndarray:
        """The evidence of each row's value in each discrete column (float32); 0 where the
        value is missing or lies in the body of the column's distribution.

        ``raw``: the numeric columns' raw values, one column per numeric column.
        """
        out = np.zeros((raw.shape[0], len(self.positions)), dtype=np.float32)
        # A loop over the discrete columns alone, once per batch and not per chunk or
        # member: each is one sorted lookup of at most MAX_LEVELS values.
        for k, j in enumerate(self.positions):
            out[:, k] = self._column_terms(raw[:, j], self._values[k], self._cumulative[k])
        return out

    @staticmethod
    def _column_terms(x: np.ndarray, values: np.ndarray, cumulative: np.ndarray) -> np.ndarray:
        n = cumulative[-1]
        at_most = cumulative[np.searchsorted(values, x, side="right")]
        at_least = n - cumulative[np.searchsorted(values, x, side="left")]
        tail = (np.minimum(at_most, at_least) + 1.0) / (n + 2.0)
        evidence = WEIGHT * np.maximum(0.0, -np.log(2.0 * tail) - OFFSET)
        evidence[np.isnan(x)] = 0.0
        return evidence


#: Nats per nat of a row's flag tail sum beyond its training median (``FlagTails``).
FLAG_WEIGHT = 2.0


class FlagTails:
    """Tail evidence of a row's two-valued columns (flags) taken together, as ECOD sums it.

    One flag tells little: set in half the rows, either value is ordinary. A row whose
    flags all sit on the side that is rarer in training (every attribute present, or every
    one absent) is unusual all the same, and a reconstruction finds such a row easy: it
    lies along the data's main correlation. Each flag value costs ``-log P(X <= x)`` on the
    left and ``-log P(X >= x)`` on the right (Laplace-smoothed training shares); the row's
    larger side sum ``S``, beyond the training rows' median ``m``, adds
    ``FLAG_WEIGHT * (S - m)`` to the score, shared among the flags by their part of ``S``.
    """

    def __init__(self, categorical: Sequence[dict[str, Any]], median: float | None):
        tables = [(j, col) for j, col in enumerate(categorical) if "flag_counts" in col]
        #: Positions of the flags among the categorical columns, and their names.
        self.positions = [j for j, _ in tables]
        self.names = tuple(col["name"] for _, col in tables)
        counts = np.array([col["flag_counts"] for _, col in tables], dtype=np.float64)
        counts = counts.reshape(len(tables), 2)
        n = counts.sum(axis=1, keepdims=True)
        # Per flag and code (0: the smaller value, 1: the larger), left and right costs.
        self._left = -np.log(np.column_stack([counts[:, 0], n[:, 0]]) + 1.0) + np.log(n + 2.0)
        self._right = -np.log(np.column_stack([n[:, 0], counts[:, 1]]) + 1.0) + np.log(n + 2.0)
        self.median = median

    def __bool__(self) -> bool:
        return bool(self.positions)

    def side_sums(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row and flag, the cost on the row's larger side; and both side sums.

        ``codes``: the flags' level codes (0, 1; -1 missing, 2 unseen: no cost).
        """
        known = (codes == 0) | (codes == 1)
        index = np.where(known, codes, 0)
        columns = np.arange(codes.shape[1])
        left = np.where(known, self._left[columns, index], 0.0)
        right = np.where(known, self._right[columns, index], 0.0)
        left_sum, right_sum = left.sum(axis=1), right.sum(axis=1)
        chosen = np.where((right_sum >= left_sum)[:, None], right, left)
        return chosen, left_sum, right_sum

    def row_sums(self, codes: np.ndarray) -> np.ndarray:
        """Each row's larger side sum, ``S``."""
        _, left_sum, right_sum = self.side_sums(codes)
        return np.maximum(left_sum, right_sum)

    def terms(self, codes: np.ndarray) -> np.ndarray:
        """Each row's evidence beyond the median, shared among its flags (float32)."""
        chosen, left_sum, right_sum = self.side_sums(codes)
        total = np.maximum(left_sum, right_sum)
        excess = FLAG_WEIGHT * np.maximum(0.0, total - (self.median or 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total[:, None] > 0, chosen / total[:, None], 0.0)
        return (share * excess[:, None]).astype(np.float32)
