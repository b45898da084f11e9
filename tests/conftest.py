"""Shared fixtures: a synthetic mixed-type data set with injected anomalies, fitted detectors.

The data: a 2-D latent ``z`` drives six correlated sensors, a direction label (``cat``, plain
strings), a level (``grade``, pandas category) and a boolean ``flag``. ``id`` is a key and
``ts`` a timestamp; NaNs are sprinkled over the sensors and both categoricals. Anomalies
either push two sensors several sigma off the plane spanned by the latent (breaking the
correlation, not the marginal range) or give a row categories that contradict its latent.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from vae_core import VAEAnomalyDetector

# The models here are tiny: with torch's default of one OpenMP thread per core, a second
# busy process on a 2-core machine makes every step wait for a spinning thread (measured
# ~20x slower). One thread keeps the suite fast and changes no result being asserted.
torch.set_num_threads(1)

SENSOR_COLUMNS = tuple(f"sensor_{j}" for j in range(6))
DIRECTIONS = ("north", "east", "south", "west")
FEATURE_COLUMNS = (*SENSOR_COLUMNS, "cat", "grade", "flag")
CATEGORICAL_NAN_COLUMNS = ("cat", "grade")

# -- machine guard ---------------------------------------------------------------------
# A test that renames a file over /dev/null replaces the device for the whole machine
# (apt, shells and every later test then write into a regular file). Checked after each
# test, so the one that did it is named, and once more when the run ends.
_DEV_NULL = "/dev/null"
_damage: list[str] = []


def _dev_null_is_intact() -> bool:
    try:
        return stat.S_ISCHR(os.stat(_DEV_NULL).st_mode)
    except OSError:
        return False


def _damage_message(culprit: str) -> str:
    return (
        f"{_DEV_NULL} is no longer a character device after {culprit}; restore it as root "
        f"with: rm {_DEV_NULL} && mknod -m 666 {_DEV_NULL} c 1 3"
    )


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    if not _damage and not _dev_null_is_intact():
        _damage.append(item.nodeid)
        pytest.fail(_damage_message(item.nodeid), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _dev_null_is_intact():
        return
    culprit = _damage[0] if _damage else "the test session"
    session.config.get_terminal_writer().line(f"FAILED: {_damage_message(culprit)}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def edit_manifest(model: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Apply ``change`` to a saved model's parsed model.json, write it back and rewrite the
    file list, as someone who also rewrote the checksums would."""
    from vae_core.model_files import write_file_list
    from vae_core.persistence import MANIFEST_NAME

    manifest = json.loads((model / MANIFEST_NAME).read_text())
    change(manifest)
    (model / MANIFEST_NAME).write_text(json.dumps(manifest))
    write_file_list(model)


#: Small, fast training settings for tests that need a fitted model but not a good one.
FAST_PARAMS = {"max_epochs": 12, "hidden_sizes": (16, 8), "latent_dim": 2, "random_state": 0}


def make_mixed_frame(
    n_rows: int = 1500,
    anomaly_fraction: float = 0.04,
    seed: int = 0,
    nan_fraction: float = 0.02,
    anomaly_kinds: tuple[str, ...] = ("numeric", "categorical"),
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return ``(frame, labels)``: labels are 1 for injected anomalies, 0 otherwise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_rows, 2))
    loadings = rng.normal(size=(2, len(SENSOR_COLUMNS)))
    loadings /= np.linalg.norm(loadings, axis=0, keepdims=True)  # each sensor has std ~1
    sensors = z @ loadings + 0.1 * rng.normal(size=(n_rows, len(SENSOR_COLUMNS)))
    quadrant = (z[:, 0] > 0).astype(int) * 2 + (z[:, 1] > 0).astype(int)
    cat = np.array(DIRECTIONS, dtype=object)[quadrant]
    grade = np.where(z[:, 1] > 0.5, "high", np.where(z[:, 1] < -0.5, "low", "mid")).astype(object)
    flag = z[:, 0] + 0.2 * rng.normal(size=n_rows) > 0

    # Missing values first, so that anomalies can be placed on observed cells only.
    sensor_nan = rng.random(sensors.shape) < nan_fraction
    cat_nan = {c: rng.random(n_rows) < nan_fraction for c in CATEGORICAL_NAN_COLUMNS}

    labels = np.zeros(n_rows, dtype=np.int64)
    n_anomalies = int(round(anomaly_fraction * n_rows))
    # Rows whose latent is far from the quadrant boundaries: there a contradicting category
    # is unambiguous, not a coin flip between neighbours.
    clear = np.flatnonzero((np.abs(z) > 0.8).all(axis=1) & ~cat_nan["cat"] & ~cat_nan["grade"])
    chosen = rng.choice(clear, n_anomalies, replace=False)
    labels[chosen] = 1
    for k, row in enumerate(chosen):
        kind = anomaly_kinds[k % len(anomaly_kinds)]
        if kind == "numeric":
            cols = rng.choice(len(SENSOR_COLUMNS), 2, replace=False)
            sensors[row, cols] += rng.choice([-1.0, 1.0], 2) * rng.uniform(4.0, 6.0, 2)
            sensor_nan[row, cols] = False
        elif kind == "categorical":
            cat[row] = DIRECTIONS[3 - quadrant[row]]  # the opposite quadrant
            grade[row] = "low" if grade[row] == "high" else "high"
            flag[row] = not flag[row]
        else:  # pragma: no cover - guards the helper's own arguments
            raise ValueError(kind)

    sensors[sensor_nan] = np.nan
    cat[cat_nan["cat"]] = None
    grade[cat_nan["grade"]] = None
    frame = pd.DataFrame(
        {
            "id": np.arange(10_000, 10_000 + n_rows),
            "ts": pd.date_range("2024-01-01", periods=n_rows, freq="min"),
            **{name: sensors[:, j] for j, name in enumerate(SENSOR_COLUMNS)},
            "cat": pd.Series(list(cat), dtype="str"),
            "grade": pd.Categorical(list(grade), categories=["low", "mid", "high"]),
            "flag": flag,
        }
    )
    return frame, labels


@pytest.fixture
def make_frame():
    """The generator itself, for tests that need their own size, seed or anomaly kind."""
    return make_mixed_frame


@pytest.fixture
def fast_params() -> dict:
    return dict(FAST_PARAMS)


@pytest.fixture(scope="session")
def mixed_data() -> tuple[pd.DataFrame, np.ndarray]:
    return make_mixed_frame()


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    """400 rows of the same structure, for tests that fit many small models."""
    frame, _ = make_mixed_frame(n_rows=400, seed=1)
    return frame


@pytest.fixture(scope="session")
def fitted_detector(mixed_data) -> VAEAnomalyDetector:
    """Default settings except a bounded epoch count. Shared: never mutate it in a test."""
    frame, _ = mixed_data
    return VAEAnomalyDetector(max_epochs=40, key_columns=("id",), random_state=0).fit(frame)


@pytest.fixture(scope="session")
def array_data() -> np.ndarray:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(300, 2))
    return z @ rng.normal(size=(2, 5)) + 0.1 * rng.normal(size=(300, 5))


@pytest.fixture(scope="session")
def array_detector(array_data) -> VAEAnomalyDetector:
    """A small model fitted on a plain 2-D float array (columns x0..x4)."""
    return VAEAnomalyDetector(**FAST_PARAMS).fit(array_data)
