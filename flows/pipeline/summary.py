"""What a scoring run keeps besides its output files: counts and bounded summaries.

Counts of rows in, scored, quarantined and flagged with the quarantine reasons; the top
rows; a uniform sample of scored rows for the charts; for windowed models, the count of
each row status and every flagged span (consecutive flagged rows of one series), exactly,
up to ``MAX_SPANS``. Memory does not grow with the input. A partition's summary merges into
the run's in input order, so a run's summary is the same however its partitions ran.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from flows.pipeline.input_checks import InputNotes
from flows.pipeline.row_validation import REASON_COLUMN
from vae_core.errors import VAEAnomalyError
from vae_core.streaming import ScoredBatch

#: Scores kept for the histogram and the time plot: a uniform sample of the run.
SAMPLE_SIZE = 50_000
#: Flagged spans kept for the report; more are counted, not drawn.
MAX_SPANS = 2_000
#: Quarantine reasons are counted by column and kind; a few whole reasons are kept as
#: examples of each. Reasons that fit no known form count under their own text, at most
#: this many distinct ones (then under ``OTHER_REASONS``), so neither memory nor the
#: report grows with the number of distinct bad values.
MAX_REASON_GROUPS = 50
REASON_EXAMPLES = 3
#: Longest example kept: one bad value may be a whole document.
MAX_EXAMPLE_CHARS = 160
OTHER_REASONS = "other reasons"
#: ``column 'fee' value '1,5' is not a number``: the value is the part that varies.
_VALUE_REASON = re.compile(r"^(?P<head>.*column '.*') value (?P<value>.*) (?P<tail>is not .*)$")


def reason_group(reason: str) -> str:
    """The group a quarantine reason counts under: its column and kind, without the value
    (``column 'fee' value '1,5' is not a number`` -> ``column 'fee': value is not a number``)."""
    match = _VALUE_REASON.match(reason)
    if match is None:
        return reason
    return f"{match['head']}: value {match['tail']}"


def _example(reason: str) -> str:
    if len(reason) <= MAX_EXAMPLE_CHARS:
        return reason
    return reason[: MAX_EXAMPLE_CHARS - 1] + "\u2026"


class RowAccountingError(VAEAnomalyError, RuntimeError):
    """Rows read differ from rows scored plus rows quarantined: something was lost."""


@dataclass
class Spans:
    """Flagged spans of each series, extended batch by batch in time order."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    _open: dict[Any, dict[str, Any]] = field(default_factory=dict, repr=False)

    def track(self, timeline: pd.DataFrame, flags: np.ndarray, time: str, series: str | None):
        """Extend or close each series' open span with a batch's scored rows, in time order."""
        rows = timeline.assign(_flag=flags, _series=None if series is None else timeline[series])
        order = ["_series", time] if series is not None else [time]
        rows = rows.sort_values(order, kind="stable")
        for entity, stamp, flagged in zip(rows["_series"], rows[time], rows["_flag"], strict=True):
            current = self._open.get(entity)
            if flagged:
                if current is None:
                    self._open[entity] = {"entity": entity, "start": stamp, "end": stamp}
                else:
                    current["end"] = stamp
            elif current is not None:
                self._close(entity)

    def _close(self, entity: Any) -> None:
        span = self._open.pop(entity)
        self.count += 1
        if len(self.kept) < MAX_SPANS:
            self.kept.append(span)

    def close(self) -> None:
        for entity in list(self._open):
            self._close(entity)


@dataclass
class PartitionResult:
    """What scoring a partition (or a whole run, once merged) produced: counts and summaries."""

    rows_in: int = 0
    rows_scored: int = 0
    rows_quarantined: int = 0
    n_flagged: int = 0
    #: Quarantined rows per reason group (``reason_group``), and a few reasons of each.
    reasons: dict[str, int] = field(default_factory=dict)
    reason_examples: dict[str, list[str]] = field(default_factory=dict)
    top: pd.DataFrame | None = None
    #: Rows that may be in the sample, pruned now and then (``sample`` reads it).
    _sample_parts: list[pd.DataFrame] = field(default_factory=list, repr=False)
    _sample_rows: int = 0
    #: No row of the sample has a larger key: rows above it need not be kept at all.
    _sample_bound: float = math.inf
    partitions: list[dict[str, object]] = field(default_factory=list)
    #: Ignored columns and key hashes: reported at the end of the run, never errors.
    notes: InputNotes | None = None
    #: Windowed models: how many rows had each status, and the flagged spans.
    status_counts: dict[str, int] = field(default_factory=dict)
    spans: Spans | None = None
    #: The sample's timestamp and series columns (None when the data has none).
    time_column: str | None = None
    series_column: str | None = None

    # -- one batch -----------------------------------------------------------------------
    def add_batch(
        self, batch: ScoredBatch, top_n: int, keys: np.ndarray, row_offset: int | None = None
    ) -> None:
        """Count a scored batch and keep what the summaries need of it.

        ``keys``: one uniform sample key per scored row. ``row_offset``: number the top rows
        by their position in the output, starting there (None: no numbering).
        """
        scored = batch.scored
        positions = np.arange(len(batch)) if scored is None else scored
        self.rows_scored += len(batch)
        self.n_flagged += int(np.count_nonzero(batch.is_anomaly))
        if batch.status is not None:
            for status, count in batch.status.value_counts().items():
                self.add_statuses({str(status): int(count)})
            self.spans = self.spans or Spans()
            timeline = batch.timeline(positions)
            self.spans.track(timeline, batch.is_anomaly[positions], self.time_column or "",
                             self.series_column)  # fmt: skip
        self.keep_top_of(batch, positions, top_n, row_offset)
        self.keep_sample_of(batch, positions, keys)

    def keep_top(self, scored: pd.DataFrame, top_n: int) -> None:
        if top_n <= 0 or scored.empty:
            return
        if len(scored) > top_n:
            # Preselect on the score array: sorting whole frames with text columns costs
            # more than scoring them. Ties at the cut are kept, so nlargest still decides.
            values = scored["score"].to_numpy()
            cut = np.partition(values, len(values) - top_n)[len(values) - top_n]
            scored = scored.loc[values >= cut]
        pool = scored if self.top is None else pd.concat([self.top, scored])
        self.top = pool.nlargest(top_n, "score")

    def keep_top_of(
        self, batch: ScoredBatch, positions: np.ndarray, top_n: int, row_offset: int | None
    ) -> None:
        """``keep_top`` of a batch's scored rows, building output rows only for candidates."""
        if top_n <= 0 or not len(positions):
            return
        score = batch.score
        rows = positions
        if self.top is not None and len(self.top) >= top_n:
            # Below the lowest kept score nothing can enter: usually no row of a batch.
            rows = rows[score[rows] >= self.top["score"].min()]
            if not len(rows):
                return
        if len(rows) > top_n:  # ties at the cut are kept, as in keep_top
            cut = np.partition(score[rows], len(rows) - top_n)[len(rows) - top_n]
            rows = rows[score[rows] >= cut]
        candidates = batch.rows(rows)
        if row_offset is not None:
            candidates = candidates.assign(row=row_offset + rows)
        self.keep_top(candidates, top_n)

    def keep_sample_of(self, batch: ScoredBatch, positions: np.ndarray, keys: np.ndarray) -> None:
        """``keep_sample`` of a batch's scored rows with sample ``keys``, one per row.

        Once the sample is full, only rows with a key below its bound can enter it, and
        only those are turned into rows.
        """
        chosen = np.flatnonzero(keys <= self._sample_bound)
        rows = positions[chosen]
        frame = batch.timeline(rows)
        frame.insert(0, "score", batch.score[rows])
        frame.insert(1, "is_anomaly", batch.is_anomaly[rows])
        self.keep_sample(frame.assign(_sample_key=keys[chosen]))

    def keep_sample(self, keyed: pd.DataFrame) -> None:
        """Keep the SAMPLE_SIZE rows with the smallest ``_sample_key`` seen so far.

        Bottom-k sampling: with uniform random keys, the rows with the smallest keys are a
        uniform sample without replacement however the rows were batched or partitioned.
        Rows are pooled and the pool is cut back when it doubles, by selection rather than
        sorting: sorting the whole sample after every batch cost more than scoring it.
        """
        if len(keyed) or not self._sample_parts:  # an empty first frame still has columns
            self._sample_parts.append(keyed)
            self._sample_rows += len(keyed)
        if self._sample_rows > 2 * SAMPLE_SIZE:
            pool = pd.concat(self._sample_parts)
            keys = pool["_sample_key"].to_numpy()
            bound = np.partition(keys, SAMPLE_SIZE - 1)[SAMPLE_SIZE - 1]
            self._keep_pool(pool[keys <= bound], float(bound))  # ties stay; ``sample`` cuts

    @property
    def sample(self) -> pd.DataFrame | None:
        """The sample: the SAMPLE_SIZE rows of smallest key (by key), or all rows if fewer."""
        if not self._sample_parts:
            return None
        parts = self._sample_parts
        pool = parts[0] if len(parts) == 1 else pd.concat(parts)
        bound = self._sample_bound
        if len(pool) > SAMPLE_SIZE:
            pool = pool.nsmallest(SAMPLE_SIZE, "_sample_key")
            bound = float(pool["_sample_key"].iloc[-1])
        self._keep_pool(pool, bound)  # read twice, cut and concatenated once
        return pool

    def _keep_pool(self, pool: pd.DataFrame, bound: float) -> None:
        self._sample_parts, self._sample_rows, self._sample_bound = [pool], len(pool), bound

    def count_quarantined(self, quarantined: pd.DataFrame) -> None:
        """Count a batch's quarantined rows and their reasons."""
        self.rows_quarantined += len(quarantined)
        counts = quarantined[REASON_COLUMN].value_counts(sort=False)
        grouped: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        for reason, count in counts.items():
            group = reason_group(str(reason))
            grouped[group] = grouped.get(group, 0) + int(count)
            kept = examples.setdefault(group, [])
            if group != reason and len(kept) < REASON_EXAMPLES:
                kept.append(_example(str(reason)))
        self.add_reasons(grouped, examples)

    def add_reasons(
        self, reasons: dict[str, int], examples: dict[str, list[str]] | None = None
    ) -> None:
        """Add counts per reason group (and examples of each), bounded in number."""
        for reason, count in reasons.items():
            group = reason
            if group not in self.reasons and len(self.reasons) >= MAX_REASON_GROUPS:
                group = OTHER_REASONS
            self.reasons[group] = self.reasons.get(group, 0) + count
            kept = self.reason_examples.setdefault(group, [])
            for example in (examples or {}).get(reason, [reason] if group != reason else []):
                if len(kept) < REASON_EXAMPLES and example not in kept:
                    kept.append(example)

    def add_statuses(self, statuses: dict[str, int]) -> None:
        for status, count in statuses.items():
            self.status_counts[status] = self.status_counts.get(status, 0) + count

    # -- whole partitions ----------------------------------------------------------------
    def merge(self, other: PartitionResult, top_n: int) -> None:
        """Fold ``other`` (the next partition in input order) into this result."""
        self.rows_in += other.rows_in
        self.rows_scored += other.rows_scored
        self.rows_quarantined += other.rows_quarantined
        self.n_flagged += other.n_flagged
        self.add_reasons(other.reasons, other.reason_examples)
        self.add_statuses(other.status_counts)
        if other.spans is not None:  # ordered streams are one partition: nothing to join
            self.spans = self.spans or Spans()
            self.spans.kept.extend(other.spans.kept[: MAX_SPANS - len(self.spans.kept)])
            self.spans.count += other.spans.count
        if other.top is not None:
            self.keep_top(other.top, top_n)
        if other.sample is not None:
            self.keep_sample(other.sample)
        self.partitions.extend(other.partitions)
        self.time_column = self.time_column or other.time_column
        self.series_column = self.series_column or other.series_column
        if other.notes is not None:
            if self.notes is None:
                self.notes = InputNotes(
                    other.notes.source, other.notes.expected, other.notes.key_columns
                )
            self.notes.merge(other.notes)

    def record_partition(
        self, index: int, file: str, row_groups: tuple[int, ...] | None, **extra: object
    ) -> None:
        """Add this result's row counts to ``partitions`` (for the manifest), with ``extra``."""
        self.partitions.append(
            {
                "index": index,
                "file": file,
                "row_groups": row_groups,
                "rows_in": self.rows_in,
                "rows_scored": self.rows_scored,
                "rows_quarantined": self.rows_quarantined,
                **extra,
            }
        )

    def check_accounting(self) -> None:
        if self.rows_in != self.rows_scored + self.rows_quarantined:
            raise RowAccountingError(
                f"rows read {self.rows_in} != rows scored {self.rows_scored} + rows "
                f"quarantined {self.rows_quarantined}; the outputs are incomplete."
            )
