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
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from vae_core.errors import InputError
from vae_core.windows import resample_step

#: The repository's config layers. An installed CLI run elsewhere finds none and uses the
#: model defaults below, which match configs/base.yaml.
CONFIG_DIR = Path(os.environ.get("VAE_ANOMALY_CONFIG_DIR", "configs"))


class ConfigError(InputError):
    """A configuration file or value is invalid; the message names the key and the value."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSettings(_Frozen):
    """Parameters of ``vae_core.VAEAnomalyDetector``; see its docstring for each."""

    latent_dim: int | Literal["auto"] = "auto"
    hidden_sizes: list[int] | Literal["auto"] = "auto"
    beta: float = Field(1.0, gt=0)
    max_epochs: int | Literal["auto"] = "auto"
    batch_size: int | Literal["auto"] = "auto"
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    patience: int = Field(10, ge=1)
    trim_fraction: float = Field(0.2, ge=0, lt=0.5)
    warmup_epochs: int = Field(2, ge=0)
    n_models: int = Field(1, ge=1)
    numeric_dof: float | None = Field(30.0, gt=0)
    threshold_method: Literal["iqr", "contamination", "fpr", "pot"] = "iqr"
    contamination: float = Field(0.05, gt=0, lt=0.5)
    target_fpr: float = Field(0.01, gt=0, lt=0.5)
    pot_risk: float = Field(0.01, gt=0, lt=0.5)
    pot_initial_quantile: float = Field(0.9, gt=0, lt=1)
    iqr_factor: float = Field(3.0, gt=0)
    device: str = "auto"
    random_state: int | None = 0

    def estimator_params(self, key_columns: list[str]) -> dict[str, Any]:
        params = self.model_dump()
        if params["hidden_sizes"] != "auto":
            params["hidden_sizes"] = tuple(params["hidden_sizes"])
        return {**params, "key_columns": tuple(key_columns)}


class TrackingSettings(_Frozen):
    tracking_uri: str = "sqlite:///mlflow.db"
    registry_uri: str | None = None
    experiment: str = "vae-anomaly"
    registered_model: str = "vae-anomaly"


class EvaluationSettings(_Frozen):
    """An optional labelled set: adds ROC AUC / AP / F1 and drives the promotion gate."""

    path: str
    label_column: str
    positive_label: Any = 1


class SensorSettings(_Frozen):
    """Sensor series: present means the model is ``vae_core.SensorVAEDetector`` (windows)."""

    timestamp_column: str
    entity_columns: list[str] = []  # none: the whole input is one series
    channels: list[str] | None = None  # null: every numeric column that is not a key
    window_length: int = Field(20, ge=1)  # rows (grid steps with resample) per window
    window_stride: int = Field(1, ge=1)  # keep every n-th training window
    differences: bool = True  # add first differences of each channel inside the window
    gap_tolerance: float | Literal["auto"] | None = "auto"  # seconds; auto: 3 median steps
    resample: str | None = None  # time grid ("1s") the windows are built on; null: the rows

    @field_validator("resample")
    @classmethod
    def _fixed_frequency(cls, value: str | None) -> str | None:
        if value is not None:
            resample_step(value)  # fail at config time, not after reading the data
        return value

    alarm_k: int = Field(1, ge=1)  # flag when k of the last n scored rows are above
    alarm_n: int = Field(1, ge=1)  # the threshold (1 of 1: every row above it)
    iqr_factor: float = Field(6.0, gt=0)  # replaces detector.iqr_factor for window scores
    numeric_dof: float | None = Field(None, gt=0)  # replaces detector.numeric_dof (Gaussian)

    @model_validator(mode="after")
    def _alarm_rule(self) -> SensorSettings:
        if self.alarm_k > self.alarm_n:
            raise ValueError(f"alarm_k={self.alarm_k} must not exceed alarm_n={self.alarm_n}")
        return self


class TrainSettings(_Frozen):
    data_path: str = "demo_output/data/train.parquet"
    columns: list[str] | None = None  # read only these (keys and timestamp are added)
    key_columns: list[str] = []
    timestamp_column: str | None = None
    time_window_start: datetime | None = None
    time_window_end: datetime | None = None
    #: Train on a uniform sample of at most this many rows, drawn in one streaming pass,
    #: so a history larger than memory never has to be loaded whole. None: every row.
    max_train_rows: int | None = Field(None, ge=10)
    #: Where the per-partition sampling of ``max_train_rows`` runs (see ScoreSettings).
    task_runner: Literal["local", "dask"] = "local"
    dask_address: str | None = None
    concurrency: int = Field(2, ge=1)
    holdout_fraction: float = Field(0.2, gt=0, lt=0.5)
    min_rows: int = Field(50, ge=10)
    numeric_errors: Literal["quarantine", "fail"] = "quarantine"
    detector: DetectorSettings = DetectorSettings()
    evaluation: EvaluationSettings | None = None
    promotion_tolerance: float = Field(0.05, ge=0)
    sensor: SensorSettings | None = None

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
        if self.sensor and self.timestamp_column is None:
            object.__setattr__(self, "timestamp_column", self.sensor.timestamp_column)
        return self


class ScoreSettings(_Frozen):
    input_path: str = "demo_output/data/score.parquet"
    output_dir: str = "demo_output/scores"
    model_uri: str = "models:/vae-anomaly@champion"
    batch_size: int = Field(65536, ge=1)
    top_n: int = Field(20, ge=0)
    numeric_errors: Literal["quarantine", "fail"] = "quarantine"
    report_title: str = "Batch anomaly report"
    concurrency: int = Field(2, ge=1)
    partition_rows: int | None = Field(None, ge=1)
    task_runner: Literal["local", "dask"] = "local"
    dask_address: str | None = None


class Settings(_Frozen):
    tracking: TrackingSettings = TrackingSettings()
    train: TrainSettings = TrainSettings()
    score: ScoreSettings = ScoreSettings()


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "MLFLOW_TRACKING_URI": ("tracking", "tracking_uri"),
    "VAE_ANOMALY_TRACKING_URI": ("tracking", "tracking_uri"),
    "VAE_ANOMALY_TRAIN_DATA": ("train", "data_path"),
    "VAE_ANOMALY_SCORE_INPUT": ("score", "input_path"),
    "VAE_ANOMALY_OUTPUT_DIR": ("score", "output_dir"),
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
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


def _field_path(loc: tuple[Any, ...]) -> str:
    """Dotted key of an error location, without pydantic's union-branch labels.

    For a field typed ``int | Literal["auto"]`` pydantic reports one error per branch, at
    locations like ``(..., "latent_dim", "int")``: walk the models and keep only real keys.
    """
    model: Any = Settings
    parts: list[str] = []
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            if fields is None and isinstance(part, int):
                parts.append(str(part))  # a list index
                continue
            break
        parts.append(str(part))
        annotation = fields[part].annotation
        model = next(
            (
                a
                for a in (annotation, *getattr(annotation, "__args__", ()))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
    return ".".join(parts) or ".".join(map(str, loc))


def _describe(error: dict[str, Any]) -> str:
    key = _field_path(tuple(error["loc"]))
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        key = ".".join(str(part) for part in error["loc"])
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
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        where = ", ".join(str(p) for p in sources) or "defaults"
        problems = _merge_problems(exc.errors())
        raise ConfigError(f"invalid configuration ({where}): {problems}") from None


def json_schema() -> dict[str, Any]:
    return Settings.model_json_schema()
