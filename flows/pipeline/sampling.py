"""A uniform random sample of a dataset larger than memory, drawn in one streaming pass.

Bottom-k sampling: every row gets a uniform random key and the ``k`` rows with the smallest
keys are the sample, uniform without replacement. Keys come from a generator seeded by
``(seed, partition index)``, so the sample depends only on the data, its partitioning and
the seed: not on the batch size, and not on whether partitions were sampled one after
another or in parallel (``sample_partition`` per partition, then ``merge_samples``).

Memory holds the current sample plus candidates below the current k-th key, so it stays
near ``k`` rows whatever the size of the input. Pure library: no Prefect, no MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vae_core.errors import EmptyInputError, InputError
from vae_core.io import DEFAULT_BATCH_SIZE, iter_batches
from vae_core.partitions import Partition, list_partitions

_KEY, _PART, _ROW = "_sample_key", "_sample_partition", "_sample_row"
RowFilter = Callable[[pd.DataFrame], np.ndarray]


@dataclass
class PartitionSample:
    """The bottom-k rows of one partition (or of several, once merged)."""

    rows: pd.DataFrame  # data columns plus the key and the rows' positions
    rows_seen: int


@dataclass(frozen=True)
class SampleInfo:
    rows_seen: int
    rows_sampled: int
    seed: int

    @property
    def sampled(self) -> bool:
        return self.rows_sampled < self.rows_seen


def _bottom_k(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    if len(frame) <= k:
        return frame
    keep = np.argpartition(frame[_KEY].to_numpy(), k - 1)[:k]
    return frame.iloc[np.sort(keep)]


def sample_partition(
    path: str | os.PathLike[str],
    partition: Partition | None,
    k: int,
    seed: int,
    columns: Sequence[str] | None = None,
    keep: RowFilter | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> PartitionSample:
    """Bottom-k sample of one partition; ``keep`` filters rows before they are counted."""
    index = 0 if partition is None else partition.index
    rng = np.random.default_rng([seed, index])
    pool: pd.DataFrame | None = None
    candidates: list[pd.DataFrame] = []
    n_candidates, seen, position = 0, 0, 0
    cutoff = np.inf  # the k-th smallest key once k rows were seen
    for batch in iter_batches(path, batch_size=batch_size, columns=columns, partition=partition):
        keys = rng.random(len(batch))  # drawn for every row read: independent of ``keep``
        rows = np.arange(position, position + len(batch))
        position += len(batch)
        if keep is not None:
            mask = np.asarray(keep(batch), dtype=bool)
            batch, keys, rows = batch.loc[mask], keys[mask], rows[mask]
        seen += len(batch)
        below = keys < cutoff
        if below.any():
            chosen = batch.loc[below].assign(**{_KEY: keys[below], _ROW: rows[below]})
            candidates.append(chosen)
            n_candidates += len(chosen)
        if n_candidates >= k:
            pool = _bottom_k(pd.concat([p for p in (pool, *candidates) if p is not None]), k)
            candidates, n_candidates = [], 0
            cutoff = float(pool[_KEY].max()) if len(pool) == k else np.inf
    pieces = [p for p in (pool, *candidates) if p is not None]
    rows_frame = _bottom_k(pd.concat(pieces), k) if pieces else pd.DataFrame()
    return PartitionSample(rows_frame.assign(**{_PART: index}), seen)


def merge_samples(samples: Sequence[PartitionSample], k: int) -> tuple[pd.DataFrame, int]:
    """Bottom-k of the union, in input order (partition, then row); and the rows seen."""
    seen = sum(s.rows_seen for s in samples)
    pieces = [s.rows for s in samples if len(s.rows)]
    if not pieces:
        return pd.DataFrame(), seen
    merged = _bottom_k(pd.concat(pieces, ignore_index=True), k)
    merged = merged.sort_values([_PART, _ROW], kind="stable")
    return merged.drop(columns=[_KEY, _PART, _ROW]).reset_index(drop=True), seen


def sample_rows(
    path: str | os.PathLike[str],
    max_rows: int,
    seed: int = 0,
    columns: Sequence[str] | None = None,
    keep: RowFilter | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> tuple[pd.DataFrame, SampleInfo]:
    """At most ``max_rows`` rows drawn uniformly from the data at ``path`` in one pass.

    All rows (in input order) when there are no more than ``max_rows``. Raises
    ``EmptyInputError`` when no row is read (or none passes ``keep``).
    """
    if max_rows < 1:
        raise InputError(f"max_rows={max_rows!r} must be at least 1.")
    samples = [
        sample_partition(path, part, max_rows, seed, columns, keep, batch_size)
        for part in list_partitions(path)
    ]
    frame, seen = merge_samples(samples, max_rows)
    if seen == 0:
        raise EmptyInputError(
            f"{os.fspath(path)}: no rows to sample from"
            + (" (none passed the row filter)." if keep is not None else ".")
        )
    return frame, SampleInfo(rows_seen=seen, rows_sampled=len(frame), seed=seed)
