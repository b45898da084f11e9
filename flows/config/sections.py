"""The settings models of each job section: tracking, train (detector, sensor, evaluation)
and score. Detector defaults are read from ``VAEAnomalyDetector``'s signature."""

from __future__ import annotations

from datetime import datetime
from inspect import Parameter, signature
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from flows.config import input_rules, runs
from flows.config.base import ConfigError, _Frozen
from flows.config.gates import DataGate, ExcludeColumns, PromotionGate
from flows.config.thresholds import IQRThreshold, ThresholdSettings, flat_threshold_params
from flows.config.tracking_uris import TrackingUri
from vae_core.detector import VAEAnomalyDetector
from vae_core.sensor import SENSOR_DETECTOR_DEFAULTS, SENSOR_FENCE
from vae_core.streaming import Detector
from vae_core.windows import resample_step

#: ``VAEAnomalyDetector``'s own defaults: the settings below read theirs from here.
_LIBRARY_DEFAULTS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in signature(VAEAnomalyDetector.__init__).parameters.items()
    if parameter.default is not Parameter.empty
}

#: A fixed weight of the KL term in the score.
KLWeight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _library(name: str, description: str, **bounds: Any) -> Any:
    """A field with the detector's default for ``name``."""
    return Field(_LIBRARY_DEFAULTS[name], description=description, **bounds)


class DetectorSettings(_Frozen):
    """Parameters of ``vae_core.VAEAnomalyDetector``; defaults are the detector's own."""

    latent_dim: int | Literal["auto"] = _library(
        "latent_dim", "Size of the latent space; auto: from the number of features."
    )
    hidden_sizes: list[int] | Literal["auto"] = _library(
        "hidden_sizes", "Widths of the encoder's hidden layers (mirrored in the decoder)."
    )
    beta: float = _library("beta", "Weight of the KL term in the training loss.", gt=0)
    kl_weight: KLWeight | Literal["auto"] = _library(
        "kl_weight", "Weight of the KL term in the score; auto: fitted on the held-out rows."
    )
    max_epochs: int | Literal["auto"] = _library(
        "max_epochs", "Upper bound on training epochs; auto: from the number of rows."
    )
    batch_size: int | Literal["auto"] = _library(
        "batch_size", "Rows per training batch; auto: from the number of rows."
    )
    min_steps: int = _library(
        "min_steps", "Fewest gradient steps auto epochs aim for, however few the rows.", ge=1
    )
    learning_rate: float = _library("learning_rate", "Adam learning rate.", gt=0)
    weight_decay: float = _library("weight_decay", "Adam weight decay (L2).", ge=0)
    validation_fraction: float = _library(
        "validation_fraction",
        "Share of training rows held out for early stopping and the threshold.",
        gt=0,
        lt=0.5,
    )
    patience: int = _library("patience", "Epochs without improvement before stopping.", ge=1)
    trim_fraction: float = _library(
        "trim_fraction", "Share of highest-loss rows left out of each batch's loss.", ge=0, lt=0.5
    )
    warmup_epochs: int = _library("warmup_epochs", "Epochs before trimming starts.", ge=0)
    n_models: int = _library("n_models", "VAEs in the ensemble; scores are averaged.", ge=1)
    numeric_dof: float | None = _library(
        "numeric_dof", "Student-t degrees of freedom for numeric columns; null: Gaussian.", gt=0
    )
    discrete_tails: bool = _library(
        "discrete_tails",
        "Add the tail evidence of numeric columns with 3 to 32 levels, and of a row's "
        "flags together, to their terms.",
    )
    threshold: ThresholdSettings = Field(
        IQRThreshold(), description="How the label-free decision threshold is fitted."
    )
    device: str = _library("device", "Torch device; auto: CUDA when present, else CPU.")
    #: Jobs are reproducible by default, unlike the library's None (a fresh seed).
    random_state: int | None = Field(0, description="Seed of training; null: a fresh seed.")

    def estimator_params(self, key_columns: list[str]) -> dict[str, Any]:
        """The flat ``VAEAnomalyDetector`` parameters, ``threshold`` spelled out."""
        params = self.model_dump(exclude={"threshold"})
        if params["hidden_sizes"] != "auto":
            params["hidden_sizes"] = tuple(params["hidden_sizes"])
        threshold = flat_threshold_params(self.threshold)
        return {**params, **threshold, "key_columns": tuple(key_columns)}


class TrackingSettings(_Frozen):
    """Where MLflow records runs and registers models."""

    tracking_uri: TrackingUri = Field(
        "sqlite:///mlflow.db", description="MLflow tracking URI (a sqlite file or a server)."
    )
    registry_uri: TrackingUri | None = Field(
        None, description="MLflow registry URI; null: tracking_uri."
    )
    experiment: str = Field("vae-anomaly", description="MLflow experiment of the runs.")
    registered_model: str = Field("vae-anomaly", description="Registered model name.")


class EvaluationSettings(_Frozen):
    """An optional labelled set: adds ROC AUC / AP / F1 and drives the promotion gate."""

    path: str = Field(description="Parquet file, directory or glob of labelled rows.")
    label_column: str = Field(description="Column holding the label.")
    positive_label: Any = Field(1, description="Label value of an anomaly.")


class SensorSettings(_Frozen):
    """Sensor series: present means the model is ``vae_core.SensorVAEDetector`` (windows)."""

    timestamp_column: str = Field(description="Column that orders each series' rows.")
    entity_columns: list[str] = Field(
        [], description="Columns naming one series each; []: the whole input is one series."
    )
    channels: list[str] | None = Field(
        None, description="Channel columns; null: every numeric column that is not a key."
    )
    window_length: int = Field(20, ge=1, description="Rows (grid steps with resample) per window.")
    window_stride: int = Field(1, ge=1, description="Keep every n-th training window.")
    differences: bool = Field(
        True, description="Add first differences of each channel inside the window."
    )
    gap_tolerance: float | Literal["auto"] | None = Field(
        "auto", description="Seconds between rows that split a series; auto: 3 median steps."
    )
    slow_channels: list[str] | Literal["auto"] | None = Field(
        "auto",
        description="Channels windowed by their differences only; auto: lag-1 autocorrelation"
        " of at least 0.75 over the training rows; null: none.",
    )
    resample: str | None = Field(
        None, description="Time grid (e.g. 1s) the windows are built on; null: the rows."
    )

    @field_validator("resample")
    @classmethod
    def _fixed_frequency(cls, value: str | None) -> str | None:
        if value is not None:
            resample_step(value)  # fail at config time, not after reading the data
        return value

    alarm_k: int = Field(1, ge=1, description="Flag when k of the last n scored rows are above.")
    alarm_n: int = Field(1, ge=1, description="... the threshold (1 of 1: every row above it).")
    threshold: ThresholdSettings = Field(
        IQRThreshold(factor=SENSOR_FENCE.factor, min_alert_rate=SENSOR_FENCE.min_alert_rate),
        description="Threshold rule on the window scores; replaces train.detector.threshold.",
    )
    numeric_dof: float | None = Field(
        SENSOR_DETECTOR_DEFAULTS["numeric_dof"],
        gt=0,
        description="Student-t dof of the window scores (null: Gaussian); replaces "
        "train.detector.numeric_dof.",
    )
    kl_weight: KLWeight | Literal["auto"] | None = Field(
        None,
        description="Weight of the KL term in the window scores (null: train.detector.beta, "
        "the training loss's); replaces train.detector.kl_weight.",
    )

    @model_validator(mode="after")
    def _alarm_rule(self) -> SensorSettings:
        if self.alarm_k > self.alarm_n:
            raise ValueError(f"alarm_k={self.alarm_k} must not exceed alarm_n={self.alarm_n}")
        return self


#: Detector settings a sensor model takes from ``train.sensor`` instead.
SENSOR_REPLACES: tuple[str, ...] = ("threshold", "numeric_dof", "kl_weight")


class TrainSettings(_Frozen):
    """The training job: data, split, detector, evaluation and promotion."""

    data_path: str = Field(
        "demo_output/data/train.parquet",
        description="Parquet file, directory (hive partitions) or glob to train on.",
    )
    columns: list[str] | None = Field(
        None, description="Read only these feature columns (keys and timestamp are added)."
    )
    key_columns: list[str] = Field([], description="Columns carried for tracing, never modelled.")
    timestamp_column: str | None = Field(
        None, description="The holdout split is the latest rows by this column."
    )
    time_window_start: datetime | None = Field(
        None, description="Train only on rows at or after this time."
    )
    time_window_end: datetime | None = Field(None, description="... and before this time.")
    lookback: runs.LookbackText = runs.LOOKBACK
    run_date: runs.RunDate = runs.TRAIN_RUN_DATE
    #: A uniform sample drawn in one streaming pass, so a history larger than memory never
    #: has to be loaded whole.
    max_train_rows: int | None = Field(
        None, ge=10, description="Train on a uniform sample of at most this many rows."
    )
    task_runner: Literal["local", "dask"] = Field(
        "local", description="Where the per-partition sampling of max_train_rows runs."
    )
    dask_address: str | None = Field(
        None, description="Dask scheduler (tcp://host:8786); null with dask: a local cluster."
    )
    concurrency: int = Field(2, ge=1, description="Partitions sampled at the same time.")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=0.5, description="Share of rows held out to compare new model and champion."
    )
    min_rows: int = Field(50, ge=10, description="Fewest valid training rows accepted.")
    numeric_errors: Literal["quarantine", "fail"] = Field(
        "quarantine", description="A non-number in a numeric column: quarantine the row or fail."
    )
    detector: DetectorSettings = Field(
        DetectorSettings(), description="Parameters of the tabular detector."
    )
    evaluation: EvaluationSettings | None = Field(
        None, description="A labelled set for metrics and the promotion gate."
    )
    promotion_tolerance: float = Field(
        0.05,
        ge=0,
        description="Label-free gate: relative slack on the median score of the champion's "
        "reference rows.",
    )
    exclude_columns: ExcludeColumns
    data_gate: DataGate
    promotion_gate: PromotionGate
    sensor: SensorSettings | None = Field(
        None, description="Sensor series: a windowed model; null: independent rows."
    )

    @model_validator(mode="after")
    def _sensor_rules(self) -> TrainSettings:
        """The holdout split and the windows order rows by the same column, and windows
        need consecutive rows, which a uniform row sample does not keep."""
        if self.sensor and self.max_train_rows is not None:
            raise ValueError(
                "max_train_rows samples single rows, which breaks the sensor windows; "
                "narrow the history with time_window_start instead"
            )
        if self.sensor and self.timestamp_column not in (None, self.sensor.timestamp_column):
            raise ValueError(
                f"timestamp_column={self.timestamp_column!r} differs from "
                f"sensor.timestamp_column={self.sensor.timestamp_column!r}; use one column"
            )
        # Set on purpose but never read: the sensor model takes these from train.sensor.
        for key in SENSOR_REPLACES if self.sensor else ():
            if key in self.detector.model_fields_set:
                raise ValueError(
                    f"train.detector.{key} does not apply to a sensor model "
                    f"(train.sensor is set); set train.sensor.{key} instead"
                )
        if self.sensor and self.timestamp_column is None:
            object.__setattr__(self, "timestamp_column", self.sensor.timestamp_column)
        return self


class ScoreSettings(_Frozen):
    """The scoring job: input, model, outputs and how partitions are spread."""

    input_path: str = Field(
        "demo_output/data/score.parquet", description="Parquet file, directory or glob to score."
    )
    output_dir: str = Field(
        "demo_output/scores", description="Directory for scores, quarantine and the report."
    )
    model_uri: str = Field(
        "models:/vae-anomaly@champion",
        description="models:/<name>@<alias> or models:/<name>/<version>.",
    )
    batch_size: int = Field(65536, ge=1, description="Rows per record batch: bounds memory.")
    top_n: int = Field(20, ge=0, description="Anomalies listed in the report.")
    numeric_errors: Literal["quarantine", "fail"] = Field(
        "quarantine", description="A non-number in a numeric column: quarantine the row or fail."
    )
    type_drift: input_rules.TypeDrift = input_rules.TYPE_DRIFT
    report_title: str = Field("Batch anomaly report", description="Title of the HTML report.")
    concurrency: int = Field(2, ge=1, description="Partitions (files) scored at the same time.")
    partition_rows: int | None = Field(
        None, ge=1, description="Split files larger than this at row groups; null: per file."
    )
    task_runner: Literal["local", "dask"] = Field(
        "local", description="local (threads) or dask (worker processes or a cluster)."
    )
    dask_address: str | None = Field(
        None, description="Dask scheduler (tcp://host:8786); null with dask: a local cluster."
    )
    keep_runs: int = runs.KEEP_RUNS
    run_date: runs.RunDate = runs.SCORE_RUN_DATE


#: Score settings about spreading partitions, which a model scored in order never reads.
PARTITION_KEYS: tuple[str, ...] = ("concurrency", "partition_rows", "task_runner", "dask_address")


def check_applies(score: ScoreSettings, detector: Detector) -> None:
    """Refuse score settings set on purpose that ``detector`` would silently ignore."""
    if not detector.ordered_stream:
        return
    unused = [f"score.{key}" for key in PARTITION_KEYS if key in score.model_fields_set]
    if unused:
        raise ConfigError(
            f"{', '.join(unused)} does not apply to this model: sensor inputs are scored as "
            "one stream, in order; remove it"
        )


class Settings(_Frozen):
    """Every job's settings."""

    tracking: TrackingSettings = Field(TrackingSettings(), description="MLflow tracking.")
    train: TrainSettings = Field(TrainSettings(), description="The training job.")
    score: ScoreSettings = Field(ScoreSettings(), description="The scoring job.")
