"""The registered model's and each version's description: what a person browsing MLflow
needs (features, threshold, training data, the gate's decision)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flows.mlops.descriptions import (
    MAX_DESCRIPTION,
    MAX_FEATURES_LISTED,
    model_description,
    version_description,
)
from tests.conftest import FAST_PARAMS
from vae_core import VAEAnomalyDetector


def test_a_version_description_names_features_threshold_data_and_decision(small_frame) -> None:
    detector = VAEAnomalyDetector(**FAST_PARAMS, key_columns=("id",)).fit(small_frame)
    text = version_description(
        detector, {"fingerprint": "abc123", "rows": 400}, "champion: passed fit", "3"
    )
    assert f"{len(detector.schema_.feature_names)} features: `sensor_0`" in text
    assert "carried, not modelled: `id`, `ts`" in text
    assert f"threshold: {detector.threshold_.value:.6g} (iqr" in text
    assert "fingerprint `abc123`, 400 rows" in text
    assert "promotion gate (against v3): champion: passed fit" in text
    first = version_description(detector, {"fingerprint": "f", "rows": 1}, "champion", None)
    assert "against no champion" in first


def test_long_feature_lists_and_descriptions_are_bounded() -> None:
    rng = np.random.default_rng(0)
    wide = pd.DataFrame(rng.normal(size=(40, 60)), columns=[f"c{i:03d}" for i in range(60)])
    detector = VAEAnomalyDetector(**FAST_PARAMS).fit(wide)
    text = model_description("wide", detector, "9")
    assert f"and {60 - MAX_FEATURES_LISTED} more" in text and "version 9" in text
    long = version_description(detector, {}, "x" * 10_000, "1")
    assert len(long) == MAX_DESCRIPTION and long.endswith("...")
