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

from flows.config.base import ConfigError
from flows.config.loading import (
    CONFIG_DIR,
    CONFIG_DIR_VARIABLE,
    ENV_OVERRIDES,
    config_dir,
    deep_merge,
    default_files,
    json_schema,
    load_settings,
    read_yaml,
    set_path,
)
from flows.config.sections import (
    PARTITION_KEYS,
    SENSOR_REPLACES,
    DetectorSettings,
    EvaluationSettings,
    ScoreSettings,
    SensorSettings,
    Settings,
    TrackingSettings,
    TrainSettings,
    check_applies,
)
from flows.config.thresholds import (
    OLD_THRESHOLD_KEYS,
    THRESHOLD_SETTINGS,
    ContaminationThreshold,
    FPRThreshold,
    IQRThreshold,
    POTThreshold,
    ThresholdRuleSettings,
    ThresholdSettings,
    flat_threshold_params,
)

__all__ = [
    "CONFIG_DIR",
    "CONFIG_DIR_VARIABLE",
    "config_dir",
    "ENV_OVERRIDES",
    "OLD_THRESHOLD_KEYS",
    "PARTITION_KEYS",
    "SENSOR_REPLACES",
    "THRESHOLD_SETTINGS",
    "ConfigError",
    "ContaminationThreshold",
    "DetectorSettings",
    "EvaluationSettings",
    "FPRThreshold",
    "IQRThreshold",
    "POTThreshold",
    "ScoreSettings",
    "SensorSettings",
    "Settings",
    "ThresholdRuleSettings",
    "ThresholdSettings",
    "TrackingSettings",
    "TrainSettings",
    "check_applies",
    "deep_merge",
    "default_files",
    "flat_threshold_params",
    "json_schema",
    "load_settings",
    "read_yaml",
    "set_path",
]
