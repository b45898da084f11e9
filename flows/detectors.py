"""The detector the training settings describe: the one place a model kind is chosen.

``train.sensor`` present means sensor series (``vae_core.SensorVAEDetector``, windows over
each entity's rows); otherwise rows are independent records (``VAEAnomalyDetector``).
Everything after construction goes through the detector protocol
(``vae_core.streaming.Detector``) and never asks which kind it holds.
"""

from __future__ import annotations

from flows.config import TrainSettings, flat_threshold_params
from vae_core import SensorVAEDetector, VAEAnomalyDetector
from vae_core.streaming import Detector


def build_detector(cfg: TrainSettings) -> Detector:
    """An unfitted detector of the kind and with the parameters ``cfg`` gives."""
    if cfg.sensor is None:
        return VAEAnomalyDetector(**cfg.detector.estimator_params(cfg.key_columns))
    return build_sensor_detector(cfg)


def build_sensor_detector(cfg: TrainSettings) -> SensorVAEDetector:
    """The windowed detector the training settings describe (``cfg.sensor`` must be set)."""
    sensor = cfg.sensor
    assert sensor is not None
    params = cfg.detector.estimator_params([])
    params.pop("key_columns")
    # The window scores have their own threshold, numeric_dof and KL weight (the config
    # refuses the detector's when set on purpose), so these replace the tabular ones.
    params.update(flat_threshold_params(sensor.threshold))
    params["numeric_dof"] = sensor.numeric_dof
    params["kl_weight"] = params["beta"] if sensor.kl_weight is None else sensor.kl_weight
    return SensorVAEDetector(
        timestamp_column=sensor.timestamp_column,
        entity_columns=sensor.entity_columns,
        channels=sensor.channels,
        window_length=sensor.window_length,
        train_stride=sensor.window_stride,
        differences=sensor.differences,
        gap_tolerance=sensor.gap_tolerance,
        resample=sensor.resample,
        slow_channels=sensor.slow_channels,
        alarm_k=sensor.alarm_k,
        alarm_n=sensor.alarm_n,
        detector_params=params,
    )
