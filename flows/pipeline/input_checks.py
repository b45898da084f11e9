"""Facts about an input that are not errors but must not pass silently.

Extra columns the model does not read are ignored, and duplicate key values are scored like
any other row (a duplicate may be a resent record or a real repeat: dropping it would lose
data, keeping it silently would hide a broken export). Rows with a null key are counted on
their own: they are not repeats of each other. A column whose values are of another kind
than in training (a timestamp where a number was, 0/1 where booleans were) is scored as the
model reads it, with a note, or stops the run (``type_drift="refuse"``); a carried
timestamp column that arrives as text is checked for values that are no timestamp. All are
reported: as ``warning:`` lines by the CLI, as log warnings, report notes and MLflow
figures by the scoring flow.

Memory: 8 bytes per row (a 64-bit hash of each row's key) for the first
``MAX_KEY_HASHES`` rows, then nothing more: scoring memory must not grow with the input, so
duplicates are counted over that prefix, and the report says so when it applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flows.config.input_rules import TypeDrift
from flows.pipeline.column_types import (
    describe,
    drift_of,
    dtype_family,
    excerpt,
    nested_kind,
    unparseable_timestamps,
)
from vae_core.errors import ColumnTypeError
from vae_core.schema import ColumnSpec, FeatureSchema

#: Rows whose keys are checked for duplicates: 40 MB of hashes, then the check stops.
MAX_KEY_HASHES = 5_000_000
#: Extra columns named in the note; an input with thousands says how many, and the first.
LISTED_COLUMNS = 10

__all__ = ["InputNotes", "TypeDrift", "duplicate_key_count", "null_key_count", "training_notes"]


@dataclass
class InputNotes:
    """Collects, batch by batch, the columns nobody reads, the keys seen more than once,
    null keys, and columns whose type differs from training."""

    source: str
    expected: frozenset[str]
    key_columns: tuple[str, ...] = ()
    extra_columns: list[str] = field(default_factory=list)
    _key_hashes: list[np.ndarray] = field(default_factory=list, repr=False)
    #: Rows whose keys were not hashed because MAX_KEY_HASHES was reached.
    unchecked_key_rows: int = 0
    #: (hash arrays counted, duplicates among them): a run asks several times at its end.
    _duplicates_counted: tuple[int, int] = field(default=(0, 0), repr=False)
    #: Rows with a null in a key column (never counted as repeats of each other).
    null_keys: int = 0
    #: False where the pipeline quarantines such rows (their reason says it already).
    null_keys_scored: bool = True
    #: The model's feature columns as trained, checked for type drift.
    specs: tuple[ColumnSpec, ...] = ()
    #: Carried timestamp columns: text in them is checked for values that are no timestamp.
    timestamp_columns: tuple[str, ...] = ()
    type_drift: TypeDrift = "warn"
    #: column -> (type in training, type here), the first batch's that differed.
    drifted: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: column -> [values that are no timestamp, the first of them].
    bad_timestamps: dict[str, list[Any]] = field(default_factory=dict)
    #: Carried timestamp column -> the type it holds instead (numbers, booleans).
    carried_drift: dict[str, str] = field(default_factory=dict)
    _extra_seen: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def for_model(
        cls,
        schema: FeatureSchema,
        source: str,
        key_columns: tuple[str, ...],
        type_drift: TypeDrift = "warn",
    ) -> InputNotes:
        """Expect the model's feature, key and carried (datetime) columns; count repeats of
        ``key_columns`` (the columns that identify a row); compare the features' types
        with training."""
        expected = frozenset([*schema.feature_names, *schema.key_columns, *schema.ignored_columns])
        return cls(
            source,
            expected,
            key_columns,
            specs=schema.columns,
            timestamp_columns=schema.ignored_columns,
            type_drift=type_drift,
        )

    def observe(self, batch: pd.DataFrame) -> None:
        self._observe_columns(batch)
        if self.key_columns and all(k in batch.columns for k in self.key_columns):
            keys = batch[list(self.key_columns)]
            null = keys.isna().any(axis=1).to_numpy()
            if null.any():
                self.null_keys += int(null.sum())
                keys = keys.loc[~null]
            room = MAX_KEY_HASHES - self._hashed_rows
            hashed = keys.iloc[: max(room, 0)]
            self.unchecked_key_rows += len(keys) - len(hashed)
            if len(hashed):
                self._key_hashes.append(pd.util.hash_pandas_object(hashed, index=False).to_numpy())

    def _observe_columns(self, batch: pd.DataFrame) -> None:
        # A set beside the list: with thousands of extra columns, list lookups per batch
        # were quadratic.
        for name in batch.columns:
            if name not in self.expected and name not in self._extra_seen:
                self._extra_seen.add(name)
                self.extra_columns.append(str(name))
        dtypes = batch.dtypes
        for spec in self.specs:
            if spec.name in self.drifted or spec.name not in batch.columns:
                continue
            drift = drift_of(spec, batch[spec.name]) if self._may_drift(spec, dtypes) else None
            if drift is not None:
                self._drift(spec.name, drift)
        for name in self.timestamp_columns:
            if name in batch.columns:
                self._observe_timestamps(name, batch[name])

    def _observe_timestamps(self, name: str, values: pd.Series) -> None:
        """A carried timestamp column: text is parsed and counted, numbers or booleans noted
        (carried through as they are: the scores do not read the column)."""
        family = dtype_family(values.dtype)
        if family == "text" and not nested_kind(values):
            count, first = unparseable_timestamps(values)
            if count:
                self.bad_timestamps.setdefault(name, [0, first])[0] += count
        elif family in ("number", "boolean") and name not in self.carried_drift:
            if values.notna().any():
                self.carried_drift[name] = describe(family, values.dtype)

    @staticmethod
    def _may_drift(spec: ColumnSpec, dtypes: pd.Series) -> bool:
        """The cheap test first: most columns arrive with exactly the trained dtype."""
        return str(dtypes[spec.name]) != spec.dtype

    def _drift(self, name: str, drift: tuple[str, str]) -> None:
        before, now = drift
        if self.type_drift == "refuse":
            raise ColumnTypeError(
                f"{self.source}: column '{name}' holds {now} but held {before} in training "
                "(score.type_drift=refuse). Fix the export, or set score.type_drift to warn "
                "to score it with a warning."
            )
        self.drifted[name] = drift

    @property
    def _hashed_rows(self) -> int:
        return sum(len(h) for h in self._key_hashes)

    def merge(self, other: InputNotes) -> None:
        """Add what ``other`` saw (the next part of the same input, in input order)."""
        for name in other.extra_columns:
            if name not in self._extra_seen:
                self._extra_seen.add(name)
                self.extra_columns.append(name)
        self.unchecked_key_rows += other.unchecked_key_rows
        for hashes in other._key_hashes:
            room = max(MAX_KEY_HASHES - self._hashed_rows, 0)
            self._key_hashes.append(hashes[:room])
            self.unchecked_key_rows += len(hashes) - min(len(hashes), room)
        self.null_keys += other.null_keys
        self.null_keys_scored = self.null_keys_scored and other.null_keys_scored
        for name, drift in other.drifted.items():
            self.drifted.setdefault(name, drift)
        for name, (count, first) in other.bad_timestamps.items():
            self.bad_timestamps.setdefault(name, [0, first])[0] += count
        for name, now in other.carried_drift.items():
            self.carried_drift.setdefault(name, now)

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
        lines = [*self._column_messages()]
        duplicates = self.duplicate_keys
        if duplicates:
            lines.append(
                f"{self.source}: {duplicates} row(s) repeat the key value of an earlier row "
                f"(key column(s) {list(self.key_columns)}); all were scored. Check the "
                "export for resent records."
            )
        if self.null_keys and self.null_keys_scored:
            lines.append(
                f"{self.source}: {self.null_keys} row(s) have a null key (key column(s) "
                f"{list(self.key_columns)}); they were scored, but their scores cannot be "
                "traced back to a record. Check the export."
            )
        if self.unchecked_key_rows:
            lines.append(
                f"{self.source}: duplicate keys were checked over the first "
                f"{MAX_KEY_HASHES:,} rows only; {self.unchecked_key_rows:,} later rows were "
                "not checked (bounded memory)."
            )
        return lines

    def _column_messages(self) -> list[str]:
        lines = []
        extra = self.extra_columns
        if len(extra) > LISTED_COLUMNS:
            first = [excerpt(name)[1:-1] for name in extra[:LISTED_COLUMNS]]
            lines.append(
                f"{self.source}: {len(extra):,} columns are not used by the model and were "
                f"ignored (not scored, not copied to the output); the first {LISTED_COLUMNS}: "
                f"{first}."
            )
        elif extra:
            lines.append(
                f"{self.source}: column(s) {extra} are not used by the model "
                "and were ignored (not scored, not copied to the output)."
            )
        for name, (before, now) in self.drifted.items():
            lines.append(
                f"{self.source}: column '{name}' holds {now} but held {before} in training; "
                "it was scored as the model reads it, so scores that lean on it are not to "
                "be trusted. Fix the export (score.type_drift: refuse stops such a run)."
            )
        for name, (count, first) in self.bad_timestamps.items():
            lines.append(
                f"{self.source}: timestamp column '{name}' holds {count} value(s) that are "
                f"not timestamps (first: {excerpt(first)}); they were carried through as text."
            )
        for name, now in self.carried_drift.items():
            lines.append(
                f"{self.source}: timestamp column '{name}' holds {now} but held timestamps in "
                "training; it was carried through as it is (the scores do not read it)."
            )
        return lines


def duplicate_key_count(frame: pd.DataFrame, key_columns: Sequence[str]) -> int:
    """Rows of ``frame`` whose key repeats an earlier row's (0 without key columns); rows
    with a null key are no repeats (see ``null_key_count``)."""
    keys = [k for k in key_columns if k in frame.columns]
    if not keys:
        return 0
    present = frame.loc[frame[keys].notna().all(axis=1), keys]
    return int(present.duplicated().sum())


def null_key_count(frame: pd.DataFrame, key_columns: Sequence[str]) -> int:
    """Rows of ``frame`` with a null in a key column."""
    keys = [k for k in key_columns if k in frame.columns]
    return int(frame[keys].isna().any(axis=1).sum()) if keys else 0


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
    nulls = null_key_count(frame, key_columns)
    if nulls:
        lines.append(
            f"{source}: {nulls} row(s) have a null key (key column(s) {list(key_columns)}); "
            "all are trained on. Check the export."
        )
    return lines
