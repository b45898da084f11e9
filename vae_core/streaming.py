"""Scoring data that arrives in batches: one protocol for every kind of detector.

A job reads its input batch by batch and hands each batch to the detector's batch scorer,
``detector.stream()``. Scoring is split in two stages so that a job can overlap them in
threads: ``prepare`` checks a batch against the model's schema and encodes it (pandas
work), ``score_prepared`` runs the model. ``score`` does both. The result, a
``ScoredBatch``, builds its output rows (``to_table``, in Arrow, or ``to_frame``) and
answers what a job summarises: each row's score and flag, which rows got a score, and the
columns that place a row in time.

Every detector kind implements ``Detector`` and registers itself in
``vae_core.model_kinds``; nothing that uses a detector needs to know which kind it holds.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from vae_core.errors import SchemaError
from vae_core.features import EncodedData
from vae_core.io import frame_to_table
from vae_core.schema import FeatureSchema
from vae_core.scoring import DEFAULT_TOP_K, ScoreArrays, score_columns, to_frame
from vae_core.threshold import Threshold


class ScoredBatch(Protocol):
    """The scores of one batch, row for row in the batch's order."""

    def __len__(self) -> int: ...

    @property
    def score(self) -> np.ndarray:
        """Score per row; NaN where a row got no score (see ``scored``)."""

    @property
    def is_anomaly(self) -> np.ndarray:
        """Flag per row (bool)."""

    @property
    def scored(self) -> np.ndarray | None:
        """Positions of the rows that got a score; None when every row did."""

    @property
    def status(self) -> pd.Series | None:
        """Why each row has or lacks a score (windowed models); None when not applicable."""

    def to_table(self) -> pa.Table:
        """The output rows: carried columns (keys, timestamps), then the score columns."""

    def to_frame(self) -> pd.DataFrame:
        """The score columns (and carried keys where the kind carries them) as pandas."""

    def rows(self, positions: np.ndarray) -> pd.DataFrame:
        """Output rows at ``positions``, numbered from 0: for the list of top rows."""

    def timeline(self, positions: np.ndarray) -> pd.DataFrame:
        """The columns that place rows at ``positions`` in time (may have no columns)."""


class BatchScorer(Protocol):
    """Scores consecutive batches of one input for one detector."""

    #: Name of the timeline's timestamp column, if the kind has one.
    time_column: str | None
    #: Name of the timeline's series label (one per entity), if there are several series.
    series_column: str | None

    def prepare(self, batch: pd.DataFrame, source: str) -> Any:
        """Check ``batch`` against the model and encode it (``source`` names it in errors)."""

    def score_prepared(self, prepared: Any) -> ScoredBatch:
        """The model's work on a prepared batch."""

    def score(self, batch: pd.DataFrame, source: str = "input") -> ScoredBatch:
        """``prepare`` and ``score_prepared`` in turn."""


class Detector(Protocol):
    """What jobs, the registry and the report rely on, whatever the model kind."""

    #: Written into the saved manifest; ``vae_core.model_kinds.load_model`` reads it back.
    kind: ClassVar[str]
    #: True when a batch's scores depend on earlier batches (windows reach back in time),
    #: so an input must be scored as one stream in time order, never in parallel parts.
    ordered_stream: ClassVar[bool]

    @property
    def schema_(self) -> FeatureSchema:
        """The raw input contract: features, key columns, carried columns."""

    @property
    def threshold_(self) -> Threshold: ...

    @property
    def kl_weight_(self) -> float:
        """The KL term's weight in the scores: ``score = recon_error + kl_weight_ * kl``."""

    @property
    def training_results_(self) -> list[Any]: ...

    @property
    def device_(self) -> Any: ...

    def fit(self, X: pd.DataFrame, y: Any = None, **fit_kwargs: Any) -> Any: ...

    def decision_function(self, X: pd.DataFrame) -> np.ndarray: ...

    def scores_and_losses(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Per row, ``decision_function``'s score and the negative ELBO,
        ``recon_error + beta * kl``, from one scoring pass: the loss says how well the model
        explains the data, comparable between versions (the score weighs the KL as each
        version fitted)."""

    def predict(self, X: pd.DataFrame) -> np.ndarray: ...

    def required_columns(self) -> tuple[str, ...]:
        """Carried columns every input must hold, besides the features."""

    def output_schema(self, top_k: int = DEFAULT_TOP_K) -> pa.Schema:
        """Types of the score columns that follow the carried columns in the output."""

    def stream(self, top_k: int = DEFAULT_TOP_K) -> BatchScorer: ...

    def score_frame(
        self, X: pd.DataFrame, top_k: int = DEFAULT_TOP_K, source: str = "input"
    ) -> pd.DataFrame: ...

    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path: ...


# -- the tabular kind -------------------------------------------------------------------
def scored_frame(
    carried: pd.DataFrame,
    arrays: ScoreArrays,
    threshold: float | Threshold,
    top_k: int = DEFAULT_TOP_K,
) -> pd.DataFrame:
    """Output rows: the carried columns, then the score columns and the top features."""
    scores = to_frame(arrays, threshold, pd.RangeIndex(len(arrays)), top_k)
    return pd.concat([carried, scores], axis=1)


def scored_table(
    carried: pd.DataFrame,
    arrays: ScoreArrays,
    threshold: float | Threshold,
    top_k: int = DEFAULT_TOP_K,
) -> pa.Table:
    """``scored_frame`` built in Arrow, as it is written: no pandas frame of the scores."""
    table = frame_to_table(carried)
    for name, column in score_columns(arrays, threshold, top_k).items():
        table = table.append_column(name, pa.array(column))
    return table


class TabularScores:
    """One batch scored by a tabular model: carried columns plus the model's arrays."""

    def __init__(
        self,
        carried: pd.DataFrame,
        arrays: ScoreArrays,
        threshold: float | Threshold,
        time_columns: tuple[str, ...],
        index: pd.Index,
        top_k: int = DEFAULT_TOP_K,
    ):
        self.carried = carried  # key and carried columns of the rows, numbered from 0
        self.arrays = arrays
        self.threshold = threshold
        self.top_k = top_k
        self._time_columns = [c for c in time_columns if c in carried.columns]
        self._index = index  # the input batch's own index, for ``to_frame``

    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def score(self) -> np.ndarray:
        return self.arrays.score

    @cached_property
    def is_anomaly(self) -> np.ndarray:
        threshold = self.threshold
        value = threshold.value if isinstance(threshold, Threshold) else threshold
        return self.arrays.score > value

    scored = None
    status = None

    def to_table(self) -> pa.Table:
        return scored_table(self.carried, self.arrays, self.threshold, self.top_k)

    def to_frame(self) -> pd.DataFrame:
        return to_frame(self.arrays, self.threshold, self._index, self.top_k)

    def rows(self, positions: np.ndarray) -> pd.DataFrame:
        candidates = self.carried.iloc[positions].reset_index(drop=True)
        return scored_frame(candidates, self.arrays.take(positions), self.threshold, self.top_k)

    def timeline(self, positions: np.ndarray) -> pd.DataFrame:
        return self.carried[self._time_columns].iloc[positions].reset_index(drop=True)


class TabularScorer:
    """``VAEAnomalyDetector.stream()``: batches are independent, in any order."""

    series_column = None

    def __init__(self, detector: Any, top_k: int = DEFAULT_TOP_K):
        self.detector = detector
        self.top_k = top_k
        schema = detector.schema_
        self._carried = (*schema.key_columns, *schema.ignored_columns)
        # The first carried (datetime) column places a row in time, for the report.
        self._time_columns = tuple(schema.ignored_columns[:1])
        self.time_column = self._time_columns[0] if self._time_columns else None

    def prepare(
        self, batch: pd.DataFrame, source: str
    ) -> tuple[pd.DataFrame, EncodedData, pd.Index]:
        keys = self.detector.schema_.key_columns
        absent = [k for k in keys if k not in batch.columns]
        if absent:
            raise SchemaError(
                f"{source}: key column(s) {absent} the model was fitted with are missing; "
                "scores could not be traced back to their rows."
            )
        carried = [c for c in self._carried if c in batch.columns]
        encoded = self.detector.encode(batch, source=source)
        return batch[carried].reset_index(drop=True), encoded, batch.index

    def score_prepared(self, prepared: tuple[pd.DataFrame, EncodedData, pd.Index]) -> TabularScores:
        carried, encoded, index = prepared
        arrays = self.detector.score_arrays(encoded)
        # The whole record: a conformal threshold adds each row's p-value to the output.
        threshold = self.detector.threshold_
        return TabularScores(carried, arrays, threshold, self._time_columns, index, self.top_k)

    def score(self, batch: pd.DataFrame, source: str = "input") -> TabularScores:
        return self.score_prepared(self.prepare(batch, source))
