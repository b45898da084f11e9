"""Sliding windows per entity: ordering, duplicates, gaps, statuses and batch-by-batch building."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vae_core.errors import ColumnTypeError, SchemaError
from vae_core.windows import (
    STATUS_AFTER_GAP,
    STATUS_DUPLICATE,
    STATUS_LATE,
    STATUS_MISSING_TIMESTAMP,
    STATUS_OK,
    STATUS_WARMING_UP,
    WindowBuilder,
    WindowSpec,
    fit_spec,
)

START = pd.Timestamp("2024-05-01 00:00:00")


def series(n: int, device: str, offset: float = 0.0, step_s: int = 1) -> pd.DataFrame:
    """Channel values that encode the device and the step, so windows can be checked."""
    steps = np.arange(n)
    return pd.DataFrame(
        {
            "ts": START + pd.to_timedelta(steps * step_s, unit="s"),
            "device": device,
            "a": offset + steps.astype(float),
            "b": -(offset + steps.astype(float)),
        }
    )


def spec(length: int = 3, **kwargs) -> WindowSpec:
    defaults = {"entity_columns": ("device",), "gap_tolerance": 3.0}
    return WindowSpec("ts", ("a", "b"), length=length, **{**defaults, **kwargs})


def build(frame: pd.DataFrame, window: WindowSpec) -> tuple[pd.DataFrame, np.ndarray]:
    """One-piece windows as a frame indexed by input position, plus every row's status."""
    built = WindowBuilder(window).transform(frame)
    return built.features.set_axis(built.rows), built.status


def test_feature_names_carry_channel_and_lag() -> None:
    names = spec(length=3, differences=True).feature_names
    assert names[:2] == ["a@t-2", "b@t-2"]
    assert names[4:6] == ["a@t", "b@t"]
    assert names[6:] == ["a.diff@t-1", "b.diff@t-1", "a.diff@t", "b.diff@t"]


def test_windows_never_cross_entities_and_first_rows_warm_up() -> None:
    frame = pd.concat([series(5, "p1"), series(5, "p2", offset=100.0)])
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)  # interleaved
    features, status = build(frame, spec(length=3))
    p2_rows = np.flatnonzero(frame["device"] == "p2")
    assert list(status[p2_rows]) == [STATUS_WARMING_UP] * 2 + [STATUS_OK] * 3
    last_p2 = features.loc[p2_rows[-1]]
    assert list(last_p2[["a@t-2", "a@t-1", "a@t"]]) == [102.0, 103.0, 104.0]
    assert len(features) == 6


def test_a_gap_starts_a_new_segment_marked_after_gap() -> None:
    frame = series(8, "p1")
    frame.loc[4:, "ts"] += pd.Timedelta(seconds=60)  # a one-minute hole before row 4
    features, status = build(frame, spec(length=3))
    assert (
        list(status)
        == [STATUS_WARMING_UP] * 2 + [STATUS_OK] * 2 + [STATUS_AFTER_GAP] * 2 + [STATUS_OK] * 2
    )
    assert list(features.loc[6, ["a@t-2", "a@t"]]) == [4.0, 6.0]  # nothing from before the gap


def test_out_of_order_rows_get_the_windows_of_sorted_rows() -> None:
    frame = pd.concat([series(6, "p1"), series(6, "p2", offset=50.0)], ignore_index=True)
    shuffled = frame.sample(frac=1.0, random_state=3)
    sorted_features, sorted_status = build(frame, spec())
    shuffled_features, shuffled_status = build(shuffled.reset_index(drop=True), spec())
    original = shuffled.index.to_numpy()  # position in the sorted frame of each shuffled row
    assert list(shuffled_status) == list(sorted_status[original])
    remapped = shuffled_features.set_axis(original[shuffled_features.index]).sort_index()
    pd.testing.assert_frame_equal(remapped, sorted_features)


def test_duplicate_timestamps_keep_the_first_row_in_input_order() -> None:
    frame = series(5, "p1")
    copy = frame.iloc[[2]].assign(a=999.0)
    frame = pd.concat([frame, copy], ignore_index=True)  # row 5 repeats row 2's timestamp
    features, status = build(frame, spec(length=3))
    assert status[5] == STATUS_DUPLICATE
    assert 999.0 not in features.to_numpy()
    assert list(status[:5]) == [STATUS_WARMING_UP] * 2 + [STATUS_OK] * 3


def test_rows_without_timestamp_are_marked_not_dropped() -> None:
    frame = series(5, "p1")
    frame.loc[3, "ts"] = pd.NaT
    built = WindowBuilder(spec(length=2)).transform(frame)
    assert built.status[3] == STATUS_MISSING_TIMESTAMP
    assert len(built.status) == 5


def random_series(seed: int) -> pd.DataFrame:
    """Three devices, irregular steps with gaps, a few duplicate timestamps, shuffled rows."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, device in enumerate(("p1", "p2", "p3")):
        n = 60 + 10 * k
        steps = rng.choice([1, 1, 1, 2, 9], size=n)  # 9 s steps exceed the 3 s tolerance
        stamps = START + pd.to_timedelta(np.cumsum(steps), unit="s")
        part = pd.DataFrame(
            {"ts": stamps, "device": device, "a": rng.normal(size=n), "b": rng.normal(size=n)}
        )
        duplicates = part.sample(3, random_state=seed + k).assign(a=rng.normal(size=3))
        parts += [part, duplicates]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_batch_by_batch_windows_equal_one_piece_windows(seed: int) -> None:
    frame = random_series(seed).sort_values("ts", kind="stable").reset_index(drop=True)
    window = spec(length=4, differences=True)
    whole_features, whole_status = build(frame, window)
    cuts = [0, 1, 7, 40, 41, 100, 150, len(frame)]
    builder = WindowBuilder(window)
    statuses, features = [], []
    for start, stop in zip(cuts[:-1], cuts[1:], strict=True):
        piece = frame.iloc[start:stop]
        # Rows inside a batch may come in any order; batches follow each other in time.
        built = builder.transform(piece.sample(frac=1.0, random_state=start).sort_index())
        statuses.append(built.status)
        features.append(built.features.set_axis(built.rows + start))
    assert list(np.concatenate(statuses)) == list(whole_status)
    assert set(whole_status) >= {STATUS_OK, STATUS_AFTER_GAP, STATUS_DUPLICATE}
    pd.testing.assert_frame_equal(pd.concat(features).sort_index(), whole_features.sort_index())


def test_an_older_row_in_a_later_batch_is_late() -> None:
    frame = series(6, "p1")
    builder = WindowBuilder(spec(length=2))
    builder.transform(frame.iloc[3:])
    later = builder.transform(frame.iloc[[0, 1, 5]])  # two older rows, a copy of the newest
    assert list(later.status) == [STATUS_LATE, STATUS_LATE, STATUS_DUPLICATE]


def test_auto_gap_tolerance_is_three_median_steps_and_channels_default_to_numeric() -> None:
    frame = series(20, "p1", step_s=2).assign(label="x")
    resolved = fit_spec(frame, "ts", ("device",), gap_tolerance="auto")
    assert resolved.gap_tolerance == pytest.approx(6.0)
    assert resolved.channels == ("a", "b")


def test_errors_name_the_missing_column_and_the_bad_value() -> None:
    frame = series(5, "p1")
    with pytest.raises(SchemaError, match="'b'"):
        WindowBuilder(spec()).transform(frame.drop(columns="b"), source="day1.parquet")
    bad = frame.astype({"a": object})
    bad.loc[2, "a"] = "twelve"
    with pytest.raises(ColumnTypeError, match="'a'.*'twelve'"):
        WindowBuilder(spec()).transform(bad, source="day1.parquet")
    with pytest.raises(ValueError, match="both a key and a channel"):
        WindowSpec("ts", ("ts", "a"))
