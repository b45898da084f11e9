"""Facts about an input that are not errors but must not pass silently.

Extra columns the model does not read are ignored, and duplicate key values are scored like
any other row (a duplicate may be a resent record or a real repeat: dropping it would lose
data, keeping it silently would hide a broken export). Both are reported: as ``warning:``
lines by the CLI, as log warnings, report notes and MLflow figures by the scoring flow.

Memory: 8 bytes per row (a 64-bit hash of each row's key) for the first
``MAX_KEY_HASHES`` rows, then nothing more: scoring memory must not grow with the input, so
duplicates are counted over that prefix, and the report says so when it applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vae_core.schema import FeatureSchema

#: Rows whose keys are checked for duplicates: 40 MB of hashes, then the check stops.
MAX_KEY_HASHES = 5_000_000


@dataclass
class InputNotes:
    """Collects, batch by batch, the columns nobody reads and the keys seen more than once."""

    source: str
    expected: frozenset[str]
    key_columns: tuple[str, ...] = ()
    extra_columns: list[str] = field(default_factory=list)
    _key_hashes: list[np.ndarray] = field(default_factory=list, repr=False)
    #: Rows whose keys were not hashed because MAX_KEY_HASHES was reached.
    unchecked_key_rows: int = 0
    #: (hash arrays counted, duplicates among them): a run asks several times at its end.
    _duplicates_counted: tuple[int, int] = field(default=(0, 0), repr=False)

    @classmethod
    def for_model(
        cls, schema: FeatureSchema, source: str, key_columns: tuple[str, ...]
    ) -> InputNotes:
        """Expect the model's feature, key and carried (datetime) columns; count repeats of
        ``key_columns`` (the columns that identify a row)."""
        expected = frozenset([*schema.feature_names, *schema.key_columns, *schema.ignored_columns])
        return cls(source, expected, key_columns)

    def observe(self, batch: pd.DataFrame) -> None:
        for name in batch.columns:
            if name not in self.expected and name not in self.extra_columns:
                self.extra_columns.append(str(name))
        if self.key_columns and all(k in batch.columns for k in self.key_columns):
            room = MAX_KEY_HASHES - self._hashed_rows
            keys = batch[list(self.key_columns)].iloc[: max(room, 0)]
            self.unchecked_key_rows += len(batch) - len(keys)
            if len(keys):
                self._key_hashes.append(pd.util.hash_pandas_object(keys, index=False).to_numpy())

    @property
    def _hashed_rows(self) -> int:
        return sum(len(h) for h in self._key_hashes)

    def merge(self, other: InputNotes) -> None:
        """Add what ``other`` saw (the next part of the same input, in input order)."""
        for name in other.extra_columns:
            if name not in self.extra_columns:
                self.extra_columns.append(name)
        self.unchecked_key_rows += other.unchecked_key_rows
        for hashes in other._key_hashes:
            room = max(MAX_KEY_HASHES - self._hashed_rows, 0)
            self._key_hashes.append(hashes[:room])
            self.unchecked_key_rows += len(hashes) - min(len(hashes), room)

    @property
    def duplicate_keys(self) -> int:
        """Rows whose key value already appeared in an earlier row of the input."""
        if self._duplicates_counted[0] == len(self._key_hashes):  # nothing new since
            return self._duplicates_counted[1]
        hashes = np.concatenate(self._key_hashes) if self._key_hashes else np.empty(0)
        # Sorted, a repeat sits next to its first: 64 ms for 5 million hashes, where
        # np.unique of 64-bit integers took 4.4 s (numpy 2.4), half of scoring them.
        hashes.sort()
        duplicates = int(np.count_nonzero(hashes[1:] == hashes[:-1]))
        self._duplicates_counted = (len(self._key_hashes), duplicates)
        return duplicates

    def messages(self) -> list[str]:
        """One line per finding, naming the input, the columns and what happened."""
        lines = []
        if self.extra_columns:
            lines.append(
                f"{self.source}: column(s) {self.extra_columns} are not used by the model "
                "and were ignored (not scored, not copied to the output)."
            )
        duplicates = self.duplicate_keys
        if duplicates:
            lines.append(
                f"{self.source}: {duplicates} row(s) repeat the key value of an earlier row "
                f"(key column(s) {list(self.key_columns)}); all were scored. Check the "
                "export for resent records."
            )
        if self.unchecked_key_rows:
            lines.append(
                f"{self.source}: duplicate keys were checked over the first "
                f"{MAX_KEY_HASHES:,} rows only; {self.unchecked_key_rows:,} later rows were "
                "not checked (bounded memory)."
            )
        return lines


def duplicate_key_count(frame: pd.DataFrame, key_columns: Sequence[str]) -> int:
    """Rows of ``frame`` whose key repeats an earlier row's (0 without key columns)."""
    keys = [k for k in key_columns if k in frame.columns]
    return int(frame.duplicated(subset=keys).sum()) if keys else 0


def training_notes(
    frame: pd.DataFrame, quarantined: pd.DataFrame, key_columns: Sequence[str], source: str
) -> list[str]:
    """Lines reporting rows left out of training and keys seen more than once."""
    lines = []
    if len(quarantined):
        reasons = quarantined["reason"].value_counts()
        lines.append(
            f"{source}: {len(quarantined)} row(s) not trained on: "
            + "; ".join(f"{reason} ({count})" for reason, count in reasons.head(5).items())
        )
    duplicates = duplicate_key_count(frame, key_columns)
    if duplicates:
        lines.append(
            f"{source}: {duplicates} row(s) repeat the key value of an earlier row (key "
            f"column(s) {list(key_columns)}); all are trained on. Check the export for "
            "resent records."
        )
    return lines
