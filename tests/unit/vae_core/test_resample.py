"""Windows over a regular time grid (``resample``): forward fill, gaps, one output row per
input row, batch-by-batch consistency and persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from flows.config import SensorSettings
from vae_core import SensorVAEDetector
from vae_core.errors import SchemaError
from vae_core.sensor import SENSOR_MANIFEST, load_detector
from vae_core.windows import (
    STATUS_AFTER_GAP,
    STATUS_DUPLICATE,
    STATUS_LATE,
    STATUS_OK,
    STATUS_WARMING_UP,
    WindowBuilder,
    WindowSpec,
    fit_spec,
)

START = pd.Timestamp("2024-05-01 00:00:00")
FAST = {"max_epochs": 4, "hidden_sizes": (16, 8), "latent_dim": 2, "random_state": 0}


def at(seconds: list[float], **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"ts": START + pd.to_timedelta(seconds, unit="s")})
    for name, values in columns.items():
        frame[name] = values
    return frame


def grid_spec(length: int = 3, **kwargs) -> WindowSpec:
    defaults = {"gap_tolerance": 3.0, "resample": "1s"}
    return WindowSpec("ts", ("a",), length=length, **{**defaults, **kwargs})


def build(frame: pd.DataFrame, spec: WindowSpec) -> tuple[pd.DataFrame, np.ndarray]:
    built = WindowBuilder(spec).transform(frame)
    return built.features.set_axis(built.rows), built.status


def test_steps_hold_the_last_row_at_or_before_them() -> None:
    # Rows at 0, 1.5, 2.2, 3 and 4.9 s: steps 0-4 hold a0, a0, a1, a3, a3 (row 2.2 is
    # replaced by row 3 before step 3 is reached).
    frame = at([0, 1.5, 2.2, 3.0, 4.9], a=[0.0, 1.0, 2.0, 3.0, 4.0])
    features, status = build(frame, grid_spec(length=3))
    assert list(status) == [STATUS_WARMING_UP] * 2 + [STATUS_OK] * 3
    # Each row gets the window ending at the step at or before it.
    assert features.loc[2].tolist() == [0.0, 0.0, 1.0]  # row 2.2 s -> step 2
    assert features.loc[3].tolist() == [0.0, 1.0, 3.0]  # row 3.0 s -> step 3, itself
    assert features.loc[4].tolist() == [1.0, 3.0, 3.0]  # row 4.9 s -> step 4
    assert list(features.columns) == ["a@t-2", "a@t-1", "a@t"]


def test_values_are_never_carried_across_a_gap() -> None:
    # 7.1 s without a row (tolerance 3 s): a4 fills steps 5-7 only, and row 12 starts a
    # new segment on the grid.
    seconds = [0, 1, 2, 3, 4.9, 12, 13, 14.5, 15, 16]
    frame = at(seconds, a=[float(k) for k in range(len(seconds))])
    features, status = build(frame, grid_spec(length=3))
    assert (
        list(status)
        == [STATUS_WARMING_UP] * 2 + [STATUS_OK] * 3 + [STATUS_AFTER_GAP] * 2 + [STATUS_OK] * 3
    )
    assert features.loc[7].tolist() == [5.0, 6.0, 6.0]  # step 14: 12, 13 and 13 carried
    assert features.loc[9].tolist() == [6.0, 8.0, 9.0]  # nothing from before the gap
    # Between rows closer than the tolerance, steps are filled: 3 s of a4 before the gap.
    close = at([0, 1, 2, 3, 4.9, 6, 7, 8], a=np.arange(8.0))
    longer = WindowBuilder(grid_spec(length=4)).transform(close)
    assert longer.features.iloc[-1].tolist() == [4.0, 5.0, 6.0, 7.0]


def test_a_row_in_the_stale_part_of_a_gap_comes_after_the_gap() -> None:
    # Step 9 is 9 s after row 0: no value, so row 9.5 (whose step is 9) has no window.
    frame = at([0, 1, 2, 9.5, 10, 11, 12], a=np.arange(7.0))
    _, status = build(frame, grid_spec(length=2))
    assert list(status) == [
        STATUS_WARMING_UP,
        STATUS_OK,
        STATUS_OK,
        STATUS_AFTER_GAP,
        STATUS_AFTER_GAP,
        STATUS_OK,
        STATUS_OK,
    ]
    # A first row between grid points has no step yet: it warms up.
    _, status = build(at([0.5, 1, 2], a=np.arange(3.0)), grid_spec(length=2))
    assert list(status) == [STATUS_WARMING_UP, STATUS_WARMING_UP, STATUS_OK]


def test_downsampling_rows_in_one_step_share_its_window() -> None:
    frame = at([k / 4 for k in range(16)], a=np.arange(16.0))  # four rows per second
    features, status = build(frame, grid_spec(length=2))
    assert list(status[:4]) == [STATUS_WARMING_UP] * 4
    assert (status[4:] == STATUS_OK).all()
    for row in range(4, 8):  # rows 1.0-1.75 s: the window of steps 0 and 1
        assert features.loc[row].tolist() == [0.0, 4.0]


def test_order_and_duplicates_are_handled_before_the_grid() -> None:
    frame = at([0, 1, 2, 3.5, 4, 5, 6], a=np.arange(7.0), device="p1")
    spec = grid_spec(length=3, entity_columns=("device",))
    # Rows in any order, then a later copy of row 3 with another value: the first is kept.
    shuffled = frame.sample(frac=1.0, random_state=4)
    with_copy = pd.concat([shuffled, frame.iloc[[3]].assign(a=999.0)]).reset_index(drop=True)
    features, status = build(frame, spec)
    mixed_features, mixed_status = build(with_copy, spec)
    original = np.r_[shuffled.index.to_numpy(), -1]  # position in ``frame`` of each row
    assert mixed_status[-1] == STATUS_DUPLICATE
    assert list(mixed_status[:-1]) == list(status[original[:-1]])
    assert 999.0 not in mixed_features.to_numpy()
    remapped = mixed_features.set_axis(original[mixed_features.index]).sort_index()
    pd.testing.assert_frame_equal(remapped, features)


def reference_windows(frame: pd.DataFrame, length: int, tolerance: float) -> dict[int, list]:
    """Grid windows of one sorted, duplicate-free, single-entity series, step by step."""
    t = (frame["ts"] - START).dt.total_seconds().to_numpy()
    a = frame["a"].to_numpy()
    segment = np.cumsum(np.r_[True, np.diff(t) > tolerance])
    grid: dict[int, tuple[float, int]] = {}  # step -> (value, raw segment)
    for step in range(int(np.ceil(t[0])), int(np.floor(t[-1])) + 1):
        last = np.searchsorted(t, step, side="right") - 1
        if step - t[last] <= tolerance:
            grid[step] = (a[last], segment[last])
    windows = {}
    for row, stamp in enumerate(t):
        end = int(np.floor(stamp))
        steps = [grid.get(s) for s in range(end - length + 1, end + 1)]
        if all(s is not None for s in steps) and len({s[1] for s in steps}) == 1:
            windows[row] = [s[0] for s in steps]
    return windows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grid_windows_match_a_step_by_step_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    weights = [0.25, 0.25, 0.25, 0.13, 0.07, 0.05]  # 2.5 and 6 s exceed the 2 s tolerance
    seconds = np.cumsum(rng.choice([0.3, 0.7, 1.0, 1.6, 2.5, 6.0], size=200, p=weights))
    frame = at(list(np.round(seconds, 3)), a=rng.normal(size=200))
    features, status = build(frame, grid_spec(length=4, gap_tolerance=2.0))
    expected = reference_windows(frame, 4, 2.0)
    assert len(expected) > 60
    assert sorted(features.index) == sorted(expected)
    for row, values in expected.items():
        assert features.loc[row].tolist() == values
    assert set(status) >= {STATUS_OK, STATUS_AFTER_GAP}


def irregular_series(seed: int) -> pd.DataFrame:
    """Three devices, sub-second jitter, gaps, duplicate timestamps, in time order."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, device in enumerate(("p1", "p2", "p3")):
        n = 60 + 15 * k
        steps = rng.choice([0.25, 0.5, 1.0, 1.0, 1.3, 2.0, 9.0], size=n)
        stamps = START + pd.to_timedelta(np.round(np.cumsum(steps), 2), unit="s")
        part = pd.DataFrame(
            {"ts": stamps, "device": device, "a": rng.normal(size=n), "b": rng.normal(size=n)}
        )
        duplicates = part.sample(3, random_state=seed + k).assign(a=rng.normal(size=3))
        parts += [part, duplicates]
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("length", [1, 4])
def test_batch_by_batch_grid_windows_equal_one_piece_windows(seed: int, length: int) -> None:
    frame = irregular_series(seed)
    spec = WindowSpec(
        "ts",
        ("a", "b"),
        ("device",),
        length=length,
        differences=True,
        gap_tolerance=3.0,
        resample="1s",
    )
    whole = WindowBuilder(spec).transform(frame)
    whole_features = whole.features.set_axis(whole.rows)
    rng = np.random.default_rng(seed)
    random_cuts = sorted({0, len(frame), *rng.integers(1, len(frame), size=25).tolist()})
    one_row_batches = list(range(len(frame) + 1))
    for cuts in (random_cuts, [0, 1, 2, 3, 50, 51, 52, 140, len(frame)], one_row_batches):
        builder = WindowBuilder(spec)
        statuses, features = [], []
        for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
            piece = frame.iloc[start:stop]
            # Rows inside a batch may come in any order; batches follow each other in time.
            built = builder.transform(piece.sample(frac=1.0, random_state=start).sort_index())
            statuses.append(built.status)
            features.append(built.features.set_axis(built.rows + start))
        assert list(np.concatenate(statuses)) == list(whole.status)
        streamed = pd.concat(features).sort_index()
        pd.testing.assert_frame_equal(streamed, whole_features.sort_index())
    assert set(whole.status) >= {STATUS_OK, STATUS_AFTER_GAP, STATUS_DUPLICATE}


def test_an_older_row_in_a_later_batch_is_late_with_resampling() -> None:
    frame = at([0, 1, 2, 3.5, 4, 5], a=np.arange(6.0))
    builder = WindowBuilder(grid_spec(length=2))
    builder.transform(frame.iloc[3:])
    later = builder.transform(frame.iloc[[0, 1, 5]])
    assert list(later.status) == [STATUS_LATE, STATUS_LATE, STATUS_DUPLICATE]


def sensor_series(n: int, seed: int, offset_s: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for k, device in enumerate(("p1", "p2")):
        seconds = offset_s + np.round(np.cumsum(rng.uniform(0.3, 1.7, size=n)), 3)
        phase = np.sin(2 * np.pi * seconds / 30 + k)
        parts.append(
            pd.DataFrame(
                {
                    "ts": START + pd.to_timedelta(seconds, unit="s"),
                    "device": device,
                    "pressure": phase + 0.05 * rng.normal(size=n),
                    "flow": 0.5 * phase + 0.05 * rng.normal(size=n),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def resampled() -> SensorVAEDetector:
    return SensorVAEDetector(
        timestamp_column="ts",
        entity_columns=("device",),
        window_length=5,
        resample="1s",
        detector_params=FAST,
    ).fit(sensor_series(200, seed=0))


def test_scores_keep_one_row_per_input_row_and_stream_exactly(resampled) -> None:
    incoming = sensor_series(150, seed=1, offset_s=3600.0).sample(frac=1.0, random_state=2)
    scores = resampled.score_frame(incoming)
    assert scores.index.equals(incoming.index)
    assert scores.loc[scores["window_status"] == STATUS_OK, "score"].notna().all()
    assert (scores["window_status"] == STATUS_OK).sum() > 250
    ordered = incoming.sort_values("ts", kind="stable")
    whole = resampled.score_frame(ordered)
    for cuts in ([0, 1, 2, 7, 150, 151, len(ordered)], [0, 99, 200, 201, len(ordered)]):
        stream = resampled.stream()
        pieces = [
            stream.score(ordered.iloc[start:stop]).to_frame()
            for start, stop in zip(cuts[:-1], cuts[1:], strict=True)
        ]
        pd.testing.assert_frame_equal(pd.concat(pieces), whole)


def test_resampling_is_saved_with_the_model(resampled, tmp_path: Path) -> None:
    path = resampled.save(tmp_path / "model")
    manifest = json.loads((path / SENSOR_MANIFEST).read_text())
    assert manifest["spec"]["resample"] == "1s" and manifest["params"]["resample"] == "1s"
    loaded = load_detector(path)
    assert loaded.spec_ == resampled.spec_
    incoming = sensor_series(60, seed=3, offset_s=7200.0)
    pd.testing.assert_frame_equal(loaded.score_frame(incoming), resampled.score_frame(incoming))


def test_a_model_saved_without_resampling_loads_as_before() -> None:
    spec = WindowSpec("ts", ("a",), length=3)
    data = spec.to_dict()
    assert data["resample"] is None
    del data["resample"]  # a manifest written before the setting existed
    assert WindowSpec.from_dict(data) == spec


def test_bad_frequencies_and_numeric_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="fixed pandas frequency"):
        grid_spec(resample="MS")  # months have no fixed length
    with pytest.raises(ValueError, match="fixed pandas frequency"):
        grid_spec(resample="often")
    numeric = pd.DataFrame({"ts": np.arange(5.0), "a": np.arange(5.0)})
    with pytest.raises(SchemaError, match="datetime timestamps"):
        WindowBuilder(grid_spec()).transform(numeric)
    assert fit_spec(at([0, 1, 2], a=[1.0, 2, 3]), "ts", resample="1s").resample == "1s"
    assert SensorSettings(timestamp_column="ts", resample="500ms").resample == "500ms"
    assert SensorSettings(timestamp_column="ts").resample is None
    with pytest.raises(ValidationError, match="fixed pandas frequency"):
        SensorSettings(timestamp_column="ts", resample="MS")
