"""Batch scoring of a sensor series: windows carried across batches, the alarm rule.

``SensorVAEDetector.stream()`` returns a ``SensorStream``. Each batch's rows are turned
into windows that reach back into earlier batches (``WindowBuilder`` keeps each entity's
tail), scored by the inner tabular model, and mapped back to the batch's rows: a row
without a full window keeps its place with a ``window_status`` and no score. Batches must
come in time order, so a job scores a sensor input as one stream.
"""

from __future__ import annotations

from collections import deque
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from vae_core.io import frame_to_table
from vae_core.scoring import DEFAULT_TOP_K
from vae_core.windows import STATUS_OK, WindowBuilder

if TYPE_CHECKING:
    from vae_core.sensor import SensorVAEDetector

#: Column of the timeline that names the series when there are several entity columns.
ENTITY_LABEL = "entity"


def entity_label(frame: pd.DataFrame, entity_columns: tuple[str, ...]) -> pd.Series | None:
    """One printable series name per row: the entity value, or ``a=1, b=2`` for several."""
    if not entity_columns:
        return None
    if len(entity_columns) == 1:
        return frame[entity_columns[0]].astype(object)
    parts = [c + "=" + frame[c].astype(str) for c in entity_columns]
    label = parts[0]
    for part in parts[1:]:
        label = label + ", " + part
    return label


class SensorScores:
    """One batch scored by a sensor model: its output rows, in the batch's order."""

    def __init__(self, frame: pd.DataFrame, timestamp_column: str, entity_columns: tuple[str, ...]):
        self.frame = frame  # on the input batch's index
        self._rows = frame.reset_index(drop=True)
        self._timestamp = timestamp_column
        self._entities = entity_columns

    def __len__(self) -> int:
        return len(self._rows)

    @cached_property
    def score(self) -> np.ndarray:
        return self._rows["score"].to_numpy()

    @cached_property
    def is_anomaly(self) -> np.ndarray:
        return self._rows["is_anomaly"].to_numpy()

    @cached_property
    def scored(self) -> np.ndarray:
        return np.flatnonzero((self._rows["window_status"] == STATUS_OK).to_numpy())

    @property
    def status(self) -> pd.Series:
        return self._rows["window_status"]

    def to_table(self) -> pa.Table:
        return frame_to_table(self._rows)

    def to_frame(self) -> pd.DataFrame:
        return self.frame

    def rows(self, positions: np.ndarray) -> pd.DataFrame:
        return self._rows.iloc[positions]

    def timeline(self, positions: np.ndarray) -> pd.DataFrame:
        rows = self._rows.iloc[positions]
        timeline = rows[[self._timestamp]]
        label = entity_label(rows, self._entities)
        return timeline if label is None else timeline.assign(**{ENTITY_LABEL: label})


class SensorStream:
    """Scores consecutive batches of one data set; state: entity tails and recent flags."""

    def __init__(self, detector: SensorVAEDetector, top_k: int = DEFAULT_TOP_K):
        self.detector = detector
        self.top_k = top_k
        self.builder = WindowBuilder(detector.spec_)
        self._recent: dict[tuple[Any, ...], deque[bool]] = {}
        spec = detector.spec_
        self.time_column: str | None = spec.timestamp_column
        self.series_column: str | None = ENTITY_LABEL if spec.entity_columns else None

    def prepare(self, batch: pd.DataFrame, source: str) -> tuple[pd.DataFrame, str]:
        # Windows depend on the previous batch's tail, which only ``score_prepared`` may
        # advance, in order: nothing to do ahead of time.
        return batch, source

    def score_prepared(self, prepared: tuple[pd.DataFrame, str]) -> SensorScores:
        frame, source = prepared
        spec = self.detector.spec_
        return SensorScores(self._score_rows(frame, source), spec.timestamp_column,
                            spec.entity_columns)  # fmt: skip

    def score(self, batch: pd.DataFrame, source: str = "input") -> SensorScores:
        """Score one batch; rows of later batches must not be older than this one's."""
        return self.score_prepared(self.prepare(batch, source))

    def _score_rows(self, frame: pd.DataFrame, source: str) -> pd.DataFrame:
        spec = self.detector.spec_
        windows = self.builder.transform(frame, source)
        out = frame[list(spec.key_columns)].copy()
        out["window_status"] = windows.status
        inner = self.detector.detector_
        n = len(frame)
        scores = (
            inner.score_frame(windows.features, self.top_k, source) if len(windows.rows) else None
        )
        for column in ("recon_error", "kl", "score"):
            values = np.full(n, np.nan)
            if scores is not None:
                values[windows.rows] = scores[column].to_numpy()
            out[column] = values
        above = np.zeros(n, dtype=bool)
        if scores is not None:
            above[windows.rows] = scores["is_anomaly"].to_numpy(dtype=bool)
        out["above_threshold"] = above
        out["is_anomaly"] = self._alarm(above, windows.rows, windows.entity_keys)
        for rank in range(1, min(self.top_k, len(spec.feature_names)) + 1):
            names = np.full(n, None, dtype=object)
            shares = np.full(n, np.nan)
            if scores is not None:
                names[windows.rows] = scores[f"top_feature_{rank}"].to_numpy()
                shares[windows.rows] = scores[f"top_feature_{rank}_share"].to_numpy()
            # Typed as strings even when a batch has no scored row, so that every batch of
            # a stream has the same columns and types.
            out[f"top_feature_{rank}"] = pd.array(names, dtype="string")
            out[f"top_feature_{rank}_share"] = shares
        return out

    def _alarm(
        self, above: np.ndarray, rows: np.ndarray, entity_keys: list[tuple[Any, ...]]
    ) -> np.ndarray:
        """k-of-n rule over each entity's scored rows in time order (``rows`` is sorted so)."""
        k, n_last = int(self.detector.alarm_k), int(self.detector.alarm_n)
        if n_last == 1:
            return above.copy()
        alarm = np.zeros_like(above)
        for row, key in zip(rows, entity_keys, strict=True):
            recent = self._recent.setdefault(key, deque(maxlen=n_last))
            recent.append(bool(above[row]))
            alarm[row] = sum(recent) >= k
        return alarm
