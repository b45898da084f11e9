"""Tail evidence of discrete numeric columns: how far out a value lies among few levels.

A numeric column with a few distinct values in training (3 to ``MAX_LEVELS``: ratings,
small counts, intensities 0-16) is a poor fit for the Gaussian the VAE decodes: ties
flatten what the decoder can tell apart, and a value at the column's extreme level costs
little once the latent code has placed the row there. What such a column does tell is
how rare a value this far out is. Each value gets the two-sided empirical tail
probability of its level in training, ``p = 2 min(P(X <= x), P(X >= x))`` with Laplace's
smoothing, and scoring adds ``WEIGHT * max(0, -log p - OFFSET)`` to that column's term.

Only tails rarer than ``exp(-OFFSET)`` count: without the offset, normal rows collected
a few nats in every column, the held-out scores spread, and the far-out fence flagged
almost nothing on discrete data. Two-valued columns are flags (Bernoulli, see
``features``) and continuous columns keep the Student-t alone: on one-hot dummies and on
continuous data this evidence lowered ROC AUC. The figures behind each choice are in
``benchmarks/README.md`` (derived sets).
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


def level_table(observed: np.ndarray) -> dict[str, list[float]] | None:
    """The distinct finite values of a column and their training counts, when discrete.

    None for a column with fewer than ``MIN_LEVELS`` or more than ``MAX_LEVELS`` values,
    or with an infinite value (its level would have no place on the scale).
    """
    values, counts = np.unique(observed, return_counts=True)
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
