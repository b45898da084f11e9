"""Slow channels: found from training data, windowed by their differences only, stored with
the model, and what they are for: a channel drifting past its training range raises no alarm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vae_core import SensorVAEDetector
from vae_core.errors import ModelFileError
from vae_core.sensor import SENSOR_MANIFEST
from vae_core.window_spec import SLOW_AUTOCORRELATION, find_slow_channels
from vae_core.windows import WindowBuilder, WindowSpec, fit_spec

FAST = {"max_epochs": 6, "hidden_sizes": (16, 8), "latent_dim": 2, "random_state": 0}
START = pd.Timestamp("2024-05-01")


def rig(n: int, seed: int = 0, devices: tuple[str, ...] = ("p1", "p2")) -> pd.DataFrame:
    """Per device: a temperature that wanders (a random walk), a noisy pressure around a
    device-specific level, and a flow that follows the pressure."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, device in enumerate(devices):
        pressure = 10.0 * k + rng.normal(size=n)
        parts.append(
            pd.DataFrame(
                {
                    "ts": START + pd.to_timedelta(np.arange(n), unit="s"),
                    "device": device,
                    "temp": 20 + np.cumsum(0.1 * rng.normal(size=n)),
                    "pressure": pressure,
                    "flow": 0.5 * pressure + 0.1 * rng.normal(size=n),
                }
            )
        )
    # Interleaved, as rows of several devices arrive.
    return pd.concat(parts, ignore_index=True).sort_values("ts", kind="stable")


def test_a_wandering_channel_is_slow_and_level_shifts_between_devices_are_not() -> None:
    frame = rig(400)
    # Pooled over both devices, pressure levels 10 apart would make consecutive rows
    # correlate; within each device they are noise.
    assert find_slow_channels(frame, "ts", ("device",), ("temp", "pressure", "flow")) == ("temp",)
    # One device alone: the walk's lag-1 correlation is near 1, the noise's near 0.
    one = frame[frame["device"] == "p1"]
    assert np.corrcoef(one["temp"][:-1], one["temp"][1:])[0, 1] > SLOW_AUTOCORRELATION
    spec = fit_spec(frame, "ts", ("device",), length=4, differences=True)
    assert spec.slow_channels == ("temp",)
    as_text = frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%S"))  # JSON exports
    assert find_slow_channels(as_text, "ts", ("device",), ("temp", "pressure")) == ("temp",)
    with pytest.raises(ValueError, match="both a key and a channel"):
        fit_spec(frame, "ts", ("device",), channels=("device", "temp"), differences=True)
    assert fit_spec(frame, "ts", ("device",), length=4, differences=False).slow_channels == ()
    assert fit_spec(frame, "ts", ("device",), length=4, differences=True, slow_channels=None) == (
        WindowSpec(spec.timestamp_column, spec.channels, ("device",), 4, True, spec.gap_tolerance)
    )


def test_a_slow_channel_enters_by_its_differences_only() -> None:
    frame = rig(30)
    plain = WindowSpec("ts", ("temp", "pressure"), ("device",), length=3, differences=True)
    slow = WindowSpec(
        "ts", ("temp", "pressure"), ("device",), length=3, differences=True, slow_channels=("temp",)
    )
    assert slow.feature_names == [
        "pressure@t-2",
        "pressure@t-1",
        "pressure@t",
        "temp.diff@t-1",
        "pressure.diff@t-1",
        "temp.diff@t",
        "pressure.diff@t",
    ]
    every = WindowBuilder(plain).transform(frame).features
    fewer = WindowBuilder(slow).transform(frame).features
    pd.testing.assert_frame_equal(fewer, every[slow.feature_names])


def test_slow_channels_must_be_channels_with_differences() -> None:
    with pytest.raises(ValueError, match=r"\['wind'\] are not among the channels"):
        WindowSpec("ts", ("temp",), length=3, differences=True, slow_channels=("wind",))
    with pytest.raises(ValueError, match="differences=True"):
        WindowSpec("ts", ("temp",), length=3, differences=False, slow_channels=("temp",))
    with pytest.raises(ValueError, match="window of at least 2"):
        WindowSpec("ts", ("temp",), length=1, differences=True, slow_channels=("temp",))


def make_detector(**kwargs) -> SensorVAEDetector:
    params = {"timestamp_column": "ts", "entity_columns": ("device",), "window_length": 5}
    return SensorVAEDetector(**params, detector_params=FAST, **kwargs)


def test_a_temperature_drifting_past_its_training_range_raises_far_fewer_alarms() -> None:
    """The same later data, normal in every respect but the temperature's level, which has
    moved on by many training ranges: with its levels in the window most rows are flagged."""
    train, later = rig(400), rig(400, seed=1)
    later["ts"] += pd.Timedelta(hours=1)
    later["temp"] += 25.0
    auto = make_detector().fit(train)
    levels = make_detector(slow_channels=None).fit(train)
    assert auto.spec_.slow_channels == ("temp",) and levels.spec_.slow_channels == ()
    assert levels.predict(later).mean() > 0.9
    assert auto.predict(later).mean() < 0.1


def test_an_explicit_list_is_kept_and_the_spec_survives_save_and_load(tmp_path: Path) -> None:
    train, later = rig(200), rig(200, seed=1)
    fitted = make_detector(slow_channels=["pressure"]).fit(train)
    assert fitted.spec_.slow_channels == ("pressure",)
    loaded = SensorVAEDetector.load(fitted.save(tmp_path / "model"))
    assert loaded.spec_ == fitted.spec_ and loaded.slow_channels == ["pressure"]
    pd.testing.assert_frame_equal(loaded.score_frame(later), fitted.score_frame(later))


def test_a_model_saved_before_slow_channels_keeps_every_level(tmp_path: Path) -> None:
    train, later = rig(200), rig(200, seed=1)
    fitted = make_detector(slow_channels=None).fit(train)
    path = fitted.save(tmp_path / "model")
    manifest = json.loads((path / SENSOR_MANIFEST).read_text())
    del manifest["spec"]["slow_channels"], manifest["params"]["slow_channels"]
    (path / SENSOR_MANIFEST).write_text(json.dumps(manifest))
    (path / "files.json").unlink()  # that version wrote no file list either
    loaded = SensorVAEDetector.load(path)
    assert loaded.spec_.slow_channels == ()
    pd.testing.assert_frame_equal(loaded.score_frame(later), fitted.score_frame(later))


def test_an_edited_slow_channel_list_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = make_detector().fit(rig(200)).save(tmp_path / "model")
    manifest = json.loads((path / SENSOR_MANIFEST).read_text())
    manifest["spec"]["slow_channels"] = [3]
    (path / SENSOR_MANIFEST).write_text(json.dumps(manifest))
    (path / "files.json").unlink()
    with pytest.raises(ModelFileError, match=r"spec\.slow_channels\[0\]"):
        SensorVAEDetector.load(path)
    manifest["spec"]["slow_channels"] = ["wind"]
    (path / SENSOR_MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="spec.*wind"):
        SensorVAEDetector.load(path)
