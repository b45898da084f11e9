"""``SensorVAEDetector``: the VAE detector applied to sliding windows of sensor series.

The windowed detector adds no model of its own: it turns rows into windows
(``vae_core.windows``) and fits an ordinary ``VAEAnomalyDetector`` on the window matrix, so
training, scoring, per-feature contributions (named ``channel@t-lag``) and label-free
thresholds are the tabular ones. What it adds is time:

- each row's score is the score of the window ending at it; rows without a full window keep
  their place in the output with a ``window_status`` and no score;
- an optional alarm rule flags a row only when at least ``alarm_k`` of the last ``alarm_n``
  scored rows of its entity lie above the threshold, which suppresses single-point flicker;
- ``stream()`` scores a series batch by batch with exactly the scores of one-piece scoring,
  carrying each entity's tail (windows) and recent flags (alarm rule) across batches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.base import BaseEstimator
from sklearn.utils import Tags

from vae_core import persistence
from vae_core.detector import MIN_TRAIN_ROWS, VAEAnomalyDetector
from vae_core.detector_files import profile_files, read_profile
from vae_core.errors import (
    EmptyInputError,
    ModelFileError,
    NotFittedError,
    SchemaError,
    TooFewRowsError,
)
from vae_core.manifest_checks import build_checked, read_sensor_manifest
from vae_core.profile import DataProfile
from vae_core.schema import ColumnSpec, FeatureSchema, is_sparse
from vae_core.scoring import DEFAULT_TOP_K, score_schema
from vae_core.sensor_stream import SensorStream
from vae_core.sizing import MAX_STEPS
from vae_core.threshold import IQRFence, Threshold
from vae_core.windows import WindowBuilder, WindowSpec, fit_spec

SENSOR_MANIFEST = "sensor.json"
VAE_SUBDIR = "vae"
SENSOR_FORMAT_VERSION = 1
#: Inner-detector defaults for window scores, under whatever ``detector_params`` sets. The
#: reference scores of a short history are those of the training windows themselves, and
#: neighbouring windows overlap, so their spread understates that of new normal data: the
#: tabular fence (3 IQR) flagged 11-12% of the normal SKAB valve1 points, 4 IQR 6-7%, with
#: slow channels windowed by their differences (before that, when the temperatures' levels
#: were features, 6 IQR was needed to keep false alarms near 16%; benchmarks/README.md).
#: Window scores keep the Gaussian cost: with the tabular Student-t scoring the fence gave
#: SKAB F1 0.808 against 0.834 (at 6 IQR, before slow channels).
#: No cap on the fence: the training windows' own scores understate new normal data's, so
#: their 0.95 quantile flagged 59% of SKAB's normal points.
SENSOR_FENCE = IQRFence(factor=4.0, min_alert_rate=0.0)
SENSOR_DETECTOR_DEFAULTS: dict[str, Any] = {
    **SENSOR_FENCE.estimator_params(),
    "numeric_dof": None,
    # The full step budget however few the windows: the fence was chosen on models trained
    # that long, and with the tabular floor of 500 steps it missed far more of SKAB's faults.
    "min_steps": MAX_STEPS,
}


class SensorVAEDetector(BaseEstimator):
    """Windowed VAE anomaly detector for sensor series (timestamp, entities, channels).

    A scikit-learn estimator (``clone``, ``get_params``, ``set_params``) with the outputs
    of ``VAEAnomalyDetector``, PyOD's convention: ``decision_function`` higher for more
    anomalous rows, ``predict`` 1 for flagged rows and 0 otherwise. Input is a DataFrame:
    the timestamp and entity columns are found by name.

    Parameters
    ----------
    timestamp_column : str
        Datetime (or numeric) column that orders each entity's rows.
    entity_columns : sequence of str
        Columns that identify a series (device, machine); none means one series.
    channels : sequence of str or None
        Channel columns; ``None`` means every numeric column that is not a key.
    window_length : int
        Rows per window (the scored row and the ``window_length - 1`` before it), or grid
        steps per window with ``resample``.
    train_stride : int
        Keep every ``train_stride``-th training window (scoring always scores every row).
    differences : bool
        Add the first differences of each channel inside the window as features.
    gap_tolerance : float, "auto" or None
        Longest step inside a segment (seconds for datetimes). "auto": 3 median steps of
        the training data; None: never split.
    resample : str or None
        Fixed pandas frequency (``"1s"``) of a time grid the windows are built on: each
        step holds the last row at or before it (never older than ``gap_tolerance``), and
        each row gets the window ending at the step at or before it. None: windows over
        the rows themselves. Datetime timestamps only.
    slow_channels : sequence of str, "auto" or None
        Channels that enter a window by their first differences only (with
        ``differences``): their levels wander beyond what a short training history spans,
        and new levels would read as anomalies. "auto": every channel whose lag-1
        autocorrelation over the training rows is at least 0.75
        (``vae_core.window_spec.SLOW_AUTOCORRELATION``); None: none.
    alarm_k, alarm_n : int
        Flag a row when at least ``alarm_k`` of its entity's last ``alarm_n`` scored rows
        (itself included) lie above the threshold. 1 and 1 flag every row above it.
    detector_params : mapping or None
        Parameters of the inner ``VAEAnomalyDetector`` (threshold method, seed, ...).

    Attributes
    ----------
    detector_ : VAEAnomalyDetector
        The inner detector, fitted on the training windows.
    decision_scores_ : ndarray of shape (n_samples,)
        ``decision_function`` of the training rows, in their order: NaN for rows without
        a full window (not saved by ``save``).
    labels_ : ndarray of shape (n_samples,)
        ``predict`` of the training rows, alarm rule included (not saved).
    """

    def __init__(
        self,
        *,
        timestamp_column: str,
        entity_columns: Sequence[str] = (),
        channels: Sequence[str] | None = None,
        window_length: int = 20,
        train_stride: int = 1,
        differences: bool = True,
        gap_tolerance: float | str | None = "auto",
        resample: str | None = None,
        slow_channels: Sequence[str] | str | None = "auto",
        alarm_k: int = 1,
        alarm_n: int = 1,
        detector_params: Mapping[str, Any] | None = None,
    ):
        # Stored as given (scikit-learn's rule, so that clone and set_params round-trip);
        # fit converts them.
        self.timestamp_column = timestamp_column
        self.entity_columns = entity_columns
        self.channels = channels
        self.window_length = window_length
        self.train_stride = train_stride
        self.differences = differences
        self.gap_tolerance = gap_tolerance
        self.resample = resample
        self.slow_channels = slow_channels
        self.alarm_k = alarm_k
        self.alarm_n = alarm_n
        self.detector_params = detector_params

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        # Missing channel values and timestamps are data (windows keep them, rows get a
        # status), entity columns may hold strings, and there is no target. Channels are
        # numeric: no categorical features. estimator_type stays None, as for the tabular
        # detector: the outputs are PyOD's, not scikit-learn's outlier contract.
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.target_tags.required = False
        return tags

    def _inner_params(self) -> dict[str, Any]:
        return dict(self.detector_params or {})

    def _manifest_params(self) -> dict[str, Any]:
        """The parameters as JSON values: sequences as lists, as manifests always held them."""
        params: dict[str, Any] = self.get_params(deep=False)
        params["entity_columns"] = list(self.entity_columns)
        params["channels"] = None if self.channels is None else list(self.channels)
        if not isinstance(self.slow_channels, str) and self.slow_channels is not None:
            params["slow_channels"] = list(self.slow_channels)
        params["detector_params"] = self._inner_params()
        return params

    def _check_params(self) -> None:
        if int(self.train_stride) < 1:
            raise ValueError(f"train_stride={self.train_stride!r} must be at least 1.")
        if not 1 <= int(self.alarm_k) <= int(self.alarm_n):
            raise ValueError(
                f"alarm_k={self.alarm_k!r}, alarm_n={self.alarm_n!r}: need 1 <= k <= n."
            )
        if "key_columns" in self._inner_params():
            raise ValueError(
                "detector_params must not set key_columns: the sensor model's keys are "
                "timestamp_column and entity_columns."
            )

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: Any = None, **fit_kwargs: Any) -> SensorVAEDetector:
        """Window the training series and fit the inner VAE on every full window."""
        self._check_params()
        self._require_frame(X, "fit()")
        if len(X) == 0:
            raise EmptyInputError("fit() got 0 rows; pass the training series.")
        spec = fit_spec(
            X,
            self.timestamp_column,
            tuple(self.entity_columns),
            None if self.channels is None else tuple(self.channels),
            self.window_length,
            self.differences,
            self.gap_tolerance,
            self.resample,
            self.slow_channels,
        )
        windows = WindowBuilder(spec).transform(X, "training data", stride=int(self.train_stride))
        if len(windows.rows) < MIN_TRAIN_ROWS:
            unit = "grid steps" if spec.resample else "rows"
            raise TooFewRowsError(
                f"the training data gives {len(windows.rows)} full windows of "
                f"{spec.length} {unit} (row statuses: {windows.counts()}); at least "
                f"{MIN_TRAIN_ROWS} are needed. Train on a longer history or shorten the window."
            )
        params = {**SENSOR_DETECTOR_DEFAULTS, **self._inner_params()}
        # Window scores weigh the KL as the training loss does: with the tabular fitted
        # weight, SKAB valve1 F1 fell from 0.860 to 0.852 at the same fence and the false
        # alarms on anomaly-free data rose from 21% to 27% (benchmarks/README.md).
        params.setdefault("kl_weight", params.get("beta", 1.0))
        self.detector_ = VAEAnomalyDetector(**params).fit(windows.features, **fit_kwargs)
        self.spec_ = spec
        self.channel_dtypes_ = {c: str(X[c].dtype) for c in spec.channels}
        self.fit_status_counts_ = windows.counts()
        self.n_windows_ = int(len(windows.rows))
        # The channels as they arrived (not the window features): what new data is compared to.
        self.training_profile_: DataProfile | None = DataProfile.from_frame(
            X, spec.channels, ["numeric"] * len(spec.channels)
        )
        # PyOD's training-row outputs: every training row scored as score_frame scores it,
        # one more pass over the series (windows at stride 1, one forward pass of the inner
        # VAE, no random numbers drawn; a fraction of one training epoch).
        training = self.score_frame(X, top_k=0, source="training data")
        self.decision_scores_: np.ndarray = training["score"].to_numpy()
        self.labels_: np.ndarray = training["is_anomaly"].to_numpy().astype(np.int64)
        return self

    @property
    def threshold_(self) -> Threshold:
        self._check_fitted()
        return self.detector_.threshold_

    @property
    def kl_weight_(self) -> float:
        """The KL term's weight in the window scores."""
        self._check_fitted()
        return float(self.detector_.kl_weight_)

    @property
    def schema_(self) -> FeatureSchema:
        """The raw input contract: channels as numeric features, entities as keys, and the
        timestamp as a carried column (the window features live in ``detector_.schema_``)."""
        self._check_fitted()
        columns = tuple(
            ColumnSpec(c, "numeric", self.channel_dtypes_.get(c, "float64"))
            for c in self.spec_.channels
        )
        return FeatureSchema(columns, self.spec_.entity_columns, (self.spec_.timestamp_column,))

    @property
    def training_results_(self) -> list[Any]:
        return self.detector_.training_results_

    @property
    def device_(self) -> Any:
        return self.detector_.device_

    def _check_fitted(self) -> None:
        if not hasattr(self, "detector_"):
            raise NotFittedError(
                "this SensorVAEDetector is not fitted; call fit(X) or "
                "SensorVAEDetector.load(path) first."
            )

    # -- scoring -------------------------------------------------------------------------
    def stream(self, top_k: int = DEFAULT_TOP_K) -> SensorStream:
        """A scorer for one series delivered in batches (files, record batches) in time order."""
        self._check_fitted()
        return SensorStream(self, top_k)

    def score_frame(
        self, X: pd.DataFrame, top_k: int = DEFAULT_TOP_K, source: str = "input"
    ) -> pd.DataFrame:
        """Score columns for every row of ``X`` (aligned with its index), keys first."""
        self._check_fitted()
        self._require_frame(X, "scoring")
        return self.stream(top_k).score(X, source).to_frame()

    def _require_frame(self, X: Any, what: str) -> None:
        """Windows are found by column name (timestamp, entities): a bare array has none."""
        if is_sparse(X):
            raise SchemaError(f"{what}: sparse input is not supported; pass a DataFrame.")
        if not isinstance(X, pd.DataFrame):
            raise SchemaError(
                f"{what} takes a DataFrame with the timestamp column "
                f"{self.timestamp_column!r} (and the entity columns), not a "
                f"{type(X).__name__}."
            )

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Window score per row (NaN for rows without a full window)."""
        return self.score_frame(X, top_k=0)["score"].to_numpy()

    def negative_elbo(self, X: pd.DataFrame) -> np.ndarray:
        """Per row, its window's ``recon_error + beta * kl`` (NaN without a full window): the
        quantity training minimised, comparable between models whatever KL weight their
        scores were fitted with."""
        return self.scores_and_losses(X)[1]

    def scores_and_losses(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``decision_function(X)`` and ``negative_elbo(X)`` from one pass over the series."""
        frame = self.score_frame(X, top_k=0)
        losses = frame["recon_error"] + self.detector_.beta * frame["kl"]
        return frame["score"].to_numpy(), losses.to_numpy()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 for flagged rows (after the alarm rule), 0 otherwise."""
        return self.score_frame(X, top_k=0)["is_anomaly"].to_numpy().astype(np.int64)

    # -- the detector protocol (vae_core.streaming) --------------------------------------
    #: Saved in the manifest; ``vae_core.model_kinds.load_model`` reads it back.
    kind: ClassVar[str] = "sensor"
    #: Windows reach back into earlier rows: an input is scored as one stream, in order.
    ordered_stream: ClassVar[bool] = True

    def required_columns(self) -> tuple[str, ...]:
        """The timestamp and entity columns: windows need each row's series and time."""
        self._check_fitted()
        return tuple(self.spec_.key_columns)

    def output_schema(self, top_k: int = DEFAULT_TOP_K) -> pa.Schema:
        """Types of the score columns, in output order (``window_status`` first)."""
        self._check_fitted()
        scores = list(score_schema(len(self.spec_.feature_names), top_k))
        status = pa.field("window_status", pa.large_string())
        above = pa.field("above_threshold", pa.bool_())
        fields = [status, *scores[:3], above, *scores[3:]]
        return pa.schema(fields)

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write a model directory: ``sensor.json`` plus the inner VAE under ``vae/``."""
        self._check_fitted()
        with persistence.staged_directory(path, overwrite) as staging:
            self.detector_.save(staging / VAE_SUBDIR)
            persistence.write_json(
                staging / SENSOR_MANIFEST,
                {
                    "format_version": SENSOR_FORMAT_VERSION,
                    "kind": self.kind,
                    "params": self._manifest_params(),
                    "spec": self.spec_.to_dict(),
                    "fit_status_counts": self.fit_status_counts_,
                    "n_windows": self.n_windows_,
                    "channel_dtypes": self.channel_dtypes_,
                },
            )
            for name, data in profile_files(self).items():  # listed in files.json on exit
                persistence.write_json(staging / name, data)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> SensorVAEDetector:
        """Load a model saved by ``save`` (JSON + safetensors; nothing is unpickled)."""
        root = Path(path)
        manifest_path = root / SENSOR_MANIFEST
        if not manifest_path.is_file():
            raise ModelFileError(
                f"{root} is not a saved sensor model: {SENSOR_MANIFEST} is missing."
            )
        # The folder against its file list, then each field (vae_core.manifest_checks).
        manifest = read_sensor_manifest(root, SENSOR_MANIFEST, SENSOR_FORMAT_VERSION)
        detector = build_checked(manifest_path, "params", cls, **manifest["params"])
        detector.detector_ = VAEAnomalyDetector.load(root / VAE_SUBDIR, device=device)
        detector.spec_ = build_checked(
            manifest_path, "spec", WindowSpec.from_dict, manifest["spec"]
        )
        detector.fit_status_counts_ = manifest["fit_status_counts"]
        detector.n_windows_ = manifest["n_windows"]
        detector.channel_dtypes_ = manifest["channel_dtypes"]
        detector.training_profile_ = read_profile(root)
        return detector


def is_sensor_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a model saved by ``SensorVAEDetector.save``."""
    return (Path(path) / SENSOR_MANIFEST).is_file()


def load_detector(path: str | os.PathLike[str], device: str = "cpu") -> Any:
    """Load whichever detector ``path`` holds (``vae_core.model_kinds.load_model``)."""
    from vae_core.model_kinds import load_model  # the registry imports this module

    return load_model(path, device=device)
