"""A run's summary: flagged spans per series, kept across batches in time order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flows.pipeline.summary import Spans
from vae_core.sensor_stream import ENTITY_LABEL, entity_label


def test_flagged_spans_follow_each_entity_across_batches() -> None:
    stamps = pd.date_range("2024-03-01", periods=8, freq="s")
    rows = pd.DataFrame(
        {
            "ts": np.tile(stamps, 2),
            "rig": np.repeat(["a", "b"], 8),
            "is_anomaly": [0, 1, 1, 0, 1, 1, 1, 1] + [1, 0, 0, 0, 0, 0, 1, 1],
        }
    ).astype({"is_anomaly": bool})
    spans = Spans()
    for part in (rows.iloc[[0, 1, 2, 8, 9, 10]], rows.drop(index=[0, 1, 2, 8, 9, 10])):
        timeline = part[["ts"]].assign(**{ENTITY_LABEL: entity_label(part, ("rig",))})
        spans.track(timeline, part["is_anomaly"].to_numpy(), "ts", ENTITY_LABEL)
    spans.close()
    found = {(s["entity"], s["start"], s["end"]) for s in spans.kept}
    assert found == {
        ("a", stamps[1], stamps[2]),
        ("a", stamps[4], stamps[7]),
        ("b", stamps[0], stamps[0]),
        ("b", stamps[6], stamps[7]),
    }
    assert spans.count == 4


def test_spans_of_a_single_series_need_no_label() -> None:
    stamps = pd.date_range("2024-03-01", periods=5, freq="s")
    spans = Spans()
    spans.track(pd.DataFrame({"ts": stamps}), np.array([1, 1, 0, 0, 1], bool), "ts", None)
    spans.close()
    assert [(s["start"], s["end"]) for s in spans.kept] == [
        (stamps[0], stamps[1]),
        (stamps[4], stamps[4]),
    ]


def test_entity_labels_name_several_columns() -> None:
    both = pd.DataFrame({"x": [1, 2], "y": ["p", "q"]})
    assert list(entity_label(both, ("x", "y"))) == ["x=1, y=p", "x=2, y=q"]
    assert entity_label(both, ()) is None
