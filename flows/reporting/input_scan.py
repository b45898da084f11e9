"""One more pass over the scored input, for what the scores alone do not tell: the feature
values of the top rows and the counts the drift figures need.

Batch by batch, only the feature and key columns, so memory does not grow with the input.
The top rows are found by their key columns (a model without keys gives no values). Any
failure here is the report's, not the run's: the scan returns what it has and says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from flows.reporting.drift import ColumnDrift, DriftCounter
from vae_core.errors import first_line
from vae_core.io import iter_batches

__all__ = ["InputScan", "scan_input", "top_values"]

#: Rows per batch of the scan.
SCAN_BATCH_ROWS = 65_536


@dataclass
class InputScan:
    values: pd.DataFrame | None = None  # feature values, row for row with the top rows
    drift: list[ColumnDrift] | None = None
    problems: list[str] = field(default_factory=list)


def _key_index(frame: pd.DataFrame, keys: list[str]) -> pd.Index:
    # Text keys: the input and the top rows may hold a key in different dtypes.
    return pd.MultiIndex.from_frame(frame[keys].astype("string"))


class _TopFinder:
    """The first input row of each top row's key, kept with the input's dtypes."""

    def __init__(self, top: pd.DataFrame, keys: list[str], columns: list[str]):
        self.keys = keys
        self.columns = columns
        self.wanted = _key_index(top, keys)
        self.seen: set[tuple] = set()
        self.parts: list[pd.DataFrame] = []

    def add(self, batch: pd.DataFrame) -> None:
        if len(self.seen) >= len(set(self.wanted)):
            return
        index = _key_index(batch, self.keys)
        hits = index.isin(self.wanted)
        if not hits.any():
            return
        part = batch.loc[hits, [c for c in self.columns if c in batch.columns]]
        part.index = index[hits]
        fresh = [tuple(k) not in self.seen for k in part.index]
        part = part.loc[fresh]
        part = part[~part.index.duplicated()]
        self.seen.update(tuple(k) for k in part.index)
        self.parts.append(part)

    def values(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(index=range(len(self.wanted)), columns=self.columns)
        found = pd.concat(self.parts)
        return found.reindex(self.wanted).reset_index(drop=True)


def top_values(
    top: pd.DataFrame, key_columns: tuple[str, ...] | list[str], columns: list[str]
) -> _TopFinder | None:
    """A finder of ``top``'s rows by their keys; ``None`` when the rows carry no keys."""
    keys = list(key_columns)
    if top is None or top.empty or not keys or not set(keys) <= set(top.columns):
        return None
    return _TopFinder(top, keys, columns)


def scan_input(
    input_path: str,
    feature_columns: list[str],
    key_columns: tuple[str, ...] | list[str],
    top: pd.DataFrame,
    profile: Mapping[str, Any] | None,
) -> InputScan:
    """Values of ``top``'s rows and drift counts of every feature against ``profile``."""
    scan = InputScan()
    finder = top_values(top, key_columns, feature_columns)
    counter = DriftCounter(profile, feature_columns) if profile is not None else None
    if finder is None and counter is None:
        return scan
    columns = list(dict.fromkeys([*key_columns, *feature_columns]))
    try:
        for batch in iter_batches(input_path, SCAN_BATCH_ROWS, columns):
            if finder is not None:
                finder.add(batch)
            if counter is not None:
                counter.add(batch)
    except Exception as exc:  # noqa: BLE001 - the scores are written; the report says why
        scan.problems.append(
            "the top rows' values and drift (the input could not be read again: "
            f"{type(exc).__name__}: {first_line(exc)})"
        )
        return scan
    if finder is not None:
        scan.values = finder.values()
    if counter is not None:
        scan.drift = counter.result()
    return scan
