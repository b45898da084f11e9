"""Job settings: frozen pydantic models read from layered YAML files and the environment.

Layering, later wins: ``configs/base.yaml`` <- the job's file (``train.yaml`` or
``score.yaml``) <- ``local.yaml`` (or any files given on the command line) <- environment
variables <- explicit overrides from the CLI. Every model forbids unknown keys, so a typo in
a config file is an error that names the key, not a silently ignored setting.

Environment variables (all optional):

- ``VAE_ANOMALY_TRACKING_URI`` / ``MLFLOW_TRACKING_URI``: MLflow tracking (and registry) URI
- ``VAE_ANOMALY_TRAIN_DATA``: training data path; ``VAE_ANOMALY_SCORE_INPUT``: scoring input
- ``VAE_ANOMALY_OUTPUT_DIR``: directory for scoring outputs, quarantine and reports
"""

from __future__ import annotations

import os
from datetime import datetime
from inspect import Parameter, signature
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vae_core.detector import VAEAnomalyDetector
from vae_core.errors import InputError
from vae_core.sensor import SENSOR_DETECTOR_DEFAULTS
from vae_core.streaming import Detector
from vae_core.threshold import (
    THRESHOLD_RULES,
    ContaminationRate,
    FalsePositiveRate,
    IQRFence,
    PeaksOverThreshold,
    ThresholdRule,
)
from vae_core.windows import resample_step

#: The repository's config layers. They hold only what differs from the defaults below, so
#: an installed CLI run elsewhere, which finds none, differs only in those keys.
CONFIG_DIR = Path(os.environ.get("VAE_ANOMALY_CONFIG_DIR", "configs"))


class ConfigError(InputError):
    """A configuration file or value is invalid; the message names the key and the value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: ``VAEAnomalyDetector``'s own defaults: the settings below read theirs from here.
_LIBRARY_DEFAULTS: dict[str, Any] = {
    name: parameter.default
    for name, parameter in signature(VAEAnomalyDetector.__init__).parameters.items()
    if parameter.default is not Parameter.empty
}


def _library(name: str, description: str, **bounds: Any) -> Any:
    """A field with the detector's default for ``name``."""
    return Field(_LIBRARY_DEFAULTS[name], description=description, **bounds)


def _rule_field(rule: type[ThresholdRule], name: str, description: str) -> Any:
    """A field with the rule's own default and bounds (open interval), so they agree."""
    low, high = rule.bounds[name]
    return Field(getattr(rule, name), gt=low, lt=high, description=description)


class ThresholdRuleSettings(_Frozen):
    _rule: ClassVar[type[ThresholdRule]]

    def rule(self) -> ThresholdRule:
        """The ``vae_core.threshold`` rule these settings describe."""
        return self._rule(**self.model_dump(exclude={"method"}))


class IQRThreshold(ThresholdRuleSettings):
    """Tukey's fence Q3 + factor * (Q3 - Q1) of the reference scores: needs no anomaly rate."""

    _rule = IQRFence
    method: Literal["iqr"] = Field("iqr", description="Threshold rule: Tukey's IQR fence.")
    factor: float = _rule_field(IQRFence, "factor", "Multiple of the interquartile range.")


class ContaminationThreshold(ThresholdRuleSettings):
    """Flag the expected share of anomalous rows (a quantile of the reference scores)."""

    _rule = ContaminationRate
    method: Literal["contamination"] = Field(
        "contamination", description="Threshold rule: an expected anomaly rate."
    )
    rate: float = _rule_field(ContaminationRate, "rate", "Share of rows flagged.")


class FPRThreshold(ThresholdRuleSettings):
    """Flag at most a share of rows that look like the reference data."""

    _rule = FalsePositiveRate
    method: Literal["fpr"] = Field("fpr", description="Threshold rule: a false-alarm rate.")
    rate: float = _rule_field(FalsePositiveRate, "rate", "Share of normal rows flagged.")


class POTThreshold(ThresholdRuleSettings):
    """Peaks over threshold: a generalised Pareto fit to the tail of the reference scores."""

    _rule = PeaksOverThreshold
    method: Literal["pot"] = Field("pot", description="Threshold rule: peaks over threshold.")
    risk: float = _rule_field(
        PeaksOverThreshold, "risk", "Probability that a normal row's score exceeds the threshold."
    )
    initial_quantile: float = _rule_field(
        PeaksOverThreshold, "initial_quantile", "Quantile of the scores where the tail fit starts."
    )


ThresholdSettings = Annotated[
    IQRThreshold | ContaminationThreshold | FPRThreshold | POTThreshold,
    Field(discriminator="method"),
]
#: The settings model of each rule, by method name.
THRESHOLD_SETTINGS: dict[str, type[ThresholdRuleSettings]] = {
    model._rule.method: model
    for model in (IQRThreshold, ContaminationThreshold, FPRThreshold, POTThreshold)
}
#: The flat detector parameters that ``threshold`` replaced (an error if used).
OLD_THRESHOLD_KEYS: tuple[str, ...] = (
    "threshold_method",
    *(flat for rule in THRESHOLD_RULES for flat in rule.estimator_names.values()),
)


def flat_threshold_params(threshold: ThresholdRuleSettings) -> dict[str, Any]:
    """Every flat threshold parameter of the detector: each rule's default, then the chosen
    rule's values, so the detector's parameters are complete whichever rule is chosen."""
    params: dict[str, Any] = {}
    for rule in THRESHOLD_RULES:
        params.update(rule().estimator_params())
    return {**params, **threshold.rule().estimator_params()}


class DetectorSettings(_Frozen):
    """Parameters of ``vae_core.VAEAnomalyDetector``; defaults are the detector's own."""

    latent_dim: int | Literal["auto"] = _library(
        "latent_dim", "Size of the latent space; auto: from the number of features."
    )
    hidden_sizes: list[int] | Literal["auto"] = _library(
        "hidden_sizes", "Widths of the encoder's hidden layers (mirrored in the decoder)."
    )
    beta: float = _library("beta", "Weight of the KL term in the training loss.", gt=0)
    max_epochs: int | Literal["auto"] = _library(
        "max_epochs", "Upper bound on training epochs; auto: from the number of rows."
    )
    batch_size: int | Literal["auto"] = _library(
        "batch_size", "Rows per training batch; auto: from the number of rows."
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

    tracking_uri: str = Field(
        "sqlite:///mlflow.db", description="MLflow tracking URI (a sqlite file or a server)."
    )
    registry_uri: str | None = Field(None, description="MLflow registry URI; null: tracking_uri.")
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
        IQRThreshold(factor=SENSOR_DETECTOR_DEFAULTS["iqr_factor"]),
        description="Threshold rule on the window scores; replaces train.detector.threshold.",
    )
    numeric_dof: float | None = Field(
        SENSOR_DETECTOR_DEFAULTS["numeric_dof"],
        gt=0,
        description="Student-t dof of the window scores (null: Gaussian); replaces "
        "train.detector.numeric_dof.",
    )

    @model_validator(mode="after")
    def _alarm_rule(self) -> SensorSettings:
        if self.alarm_k > self.alarm_n:
            raise ValueError(f"alarm_k={self.alarm_k} must not exceed alarm_n={self.alarm_n}")
        return self


#: Detector settings a sensor model takes from ``train.sensor`` instead.
SENSOR_REPLACES: tuple[str, ...] = ("threshold", "numeric_dof")


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
        0.05, ge=0, description="Label-free gate: relative slack on the holdout median score."
    )
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


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "MLFLOW_TRACKING_URI": ("tracking", "tracking_uri"),
    "VAE_ANOMALY_TRACKING_URI": ("tracking", "tracking_uri"),
    "VAE_ANOMALY_TRAIN_DATA": ("train", "data_path"),
    "VAE_ANOMALY_SCORE_INPUT": ("score", "input_path"),
    "VAE_ANOMALY_OUTPUT_DIR": ("score", "output_dir"),
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base``, mappings key by key; a mapping that names another
    ``method`` (a threshold rule) replaces the earlier one, whose keys it does not have."""
    merged = dict(base)
    for key, value in override.items():
        earlier = merged.get(key)
        if isinstance(value, dict) and isinstance(earlier, dict):
            if value.get("method", earlier.get("method")) != earlier.get("method"):
                merged[key] = value
                continue
            merged[key] = deep_merge(earlier, value)
        else:
            merged[key] = value
    return merged


def set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    try:
        data = yaml.safe_load(text)  # never yaml.load: a config must not run code
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, not {data!r}.")
    return data


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The settings models a field holds: itself, or the members of a union."""
    members = (annotation, *getattr(annotation, "__args__", ()))
    return [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]


def _field_path(loc: tuple[Any, ...], extra: bool = False) -> str:
    """Dotted key of an error location, without pydantic's union-branch labels.

    For a field typed ``int | Literal["auto"]`` pydantic reports one error per branch, at
    locations like ``(..., "latent_dim", "int")``, and a threshold rule's error sits under
    its tag (``(..., "threshold", "fpr", "rate")``): walk the models and keep only real
    keys. ``extra``: the last part is an unknown key, kept too.
    """
    models: list[type[BaseModel]] = [Settings]
    parts: list[str] = []
    for index, part in enumerate(loc):
        model = next((m for m in models if part in m.model_fields), None)
        if model is not None:
            parts.append(str(part))
            models = _models(model.model_fields[part].annotation)
            continue
        tagged = [m for m in models if _tag(m) == part]
        if tagged:
            models = tagged  # the branch of a discriminated union: not a key of its own
        elif not models and isinstance(part, int):
            parts.append(str(part))  # a list index
        else:
            if extra and index == len(loc) - 1:
                parts.append(str(part))
            break
    return ".".join(parts) or ".".join(map(str, loc))


def _tag(model: type[BaseModel]) -> Any:
    method = model.model_fields.get("method")
    return method.default if method is not None else None


def _describe(error: dict[str, Any]) -> str:
    key = _field_path(tuple(error["loc"]))
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        key = _field_path(tuple(error["loc"]), extra=True)
        return (
            f"unknown key '{key}' (value {value!r}); check the spelling against "
            "`vae-anomaly config-schema`"
        )
    allowed = error.get("ctx", {}).get("expected") or error["msg"]
    return f"key '{key}' has value {value!r}: {allowed}"


def _merge_problems(errors: list[dict[str, Any]]) -> str:
    """One message per key: union branches of the same field are joined with 'or'."""
    by_key: dict[str, list[str]] = {}
    for error in errors:
        text = _describe(error)
        key = text.split("'")[1]
        by_key.setdefault(key, []).append(text)
    merged = []
    for texts in by_key.values():
        first = texts[0]
        extra = [t.split(": ", 1)[1] for t in texts[1:] if ": " in t]
        merged.append(" or ".join([first, *extra]))
    return "; ".join(merged)


def _new_threshold_form(old: dict[str, Any], default: ThresholdRule) -> str:
    """The ``threshold`` mapping that says what the old flat keys in ``old`` said."""
    model = THRESHOLD_SETTINGS.get(old.get("threshold_method", default.method))
    if model is None:
        model = THRESHOLD_SETTINGS[default.method]
    rule = model._rule
    fallback = default if isinstance(default, rule) else rule()
    values = {"method": rule.method}
    for name, flat in rule.estimator_names.items():
        values[name] = old.get(flat, getattr(fallback, name))
    return "{" + ", ".join(f"{key}: {value}" for key, value in values.items()) + "}"


def _refuse_old_threshold_keys(tree: dict[str, Any], where: str) -> None:
    """The flat threshold keys (and ``train.sensor.iqr_factor``) are one ``threshold`` now:
    name each old key and show the new form, with the values the old keys gave."""
    train = tree.get("train") if isinstance(tree.get("train"), dict) else {}
    sections = {
        "train.detector": (train.get("detector"), OLD_THRESHOLD_KEYS, IQRFence()),
        "train.sensor": (
            train.get("sensor"),
            ("iqr_factor",),
            IQRFence(SENSOR_DETECTOR_DEFAULTS["iqr_factor"]),
        ),
    }
    for path, (section, old_keys, default) in sections.items():
        if not isinstance(section, dict):
            continue
        found = [key for key in old_keys if key in section]
        if found:
            names = ", ".join(f"'{path}.{key}'" for key in found)
            form = _new_threshold_form(section, default)
            raise ConfigError(
                f"invalid configuration ({where}): {names} replaced by one setting: "
                f"write {path}.threshold: {form}"
            )


def default_files(job: str | None) -> list[Path]:
    """base.yaml, the job's file and local.yaml, those of them that exist in configs/."""
    root = CONFIG_DIR
    names = ["base.yaml", *([f"{job}.yaml"] if job else []), "local.yaml"]
    return [root / name for name in names if (root / name).is_file()]


def load_settings(
    files: list[Path] | None = None,
    job: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge YAML ``files`` (default: the shipped layers for ``job``), env and overrides."""
    tree: dict[str, Any] = {}
    sources = files if files is not None else default_files(job)
    for path in sources:
        tree = deep_merge(tree, read_yaml(Path(path)))
    env = os.environ if environ is None else environ
    for variable, path in ENV_OVERRIDES.items():
        if env.get(variable):
            set_path(tree, path, env[variable])
    tree = deep_merge(tree, overrides or {})
    where = ", ".join(str(p) for p in sources) or "defaults"
    _refuse_old_threshold_keys(tree, where)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        problems = _merge_problems(exc.errors())
        raise ConfigError(f"invalid configuration ({where}): {problems}") from None


def json_schema() -> dict[str, Any]:
    return Settings.model_json_schema()
