"""The scoring flow's bounded summaries: top rows and a uniform sample of the run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows import score_flow
from flows.score_flow import RunSummary


def batch(start: int, n: int) -> pd.DataFrame:
    rows = np.arange(start, start + n)
    return pd.DataFrame({"row": rows, "score": rows.astype(float), "is_anomaly": False})


def test_top_rows_are_the_highest_scores_across_batches() -> None:
    summary = RunSummary()
    for start in range(0, 1000, 100):
        summary.keep_top(batch(start, 100), top_n=5)
    assert summary.top["row"].tolist() == [999, 998, 997, 996, 995]


def test_sample_is_bounded_and_uniform_over_the_whole_run(monkeypatch) -> None:
    monkeypatch.setattr(score_flow, "SAMPLE_SIZE", 2000)
    summary = RunSummary()
    rng = np.random.default_rng(0)
    # uneven batches: a batch-weighted scheme would over-represent the small ones
    starts, sizes = np.cumsum([0, 100, 50_000, 300, 29_600])[:-1], [100, 50_000, 300, 29_600]
    for start, size in zip(starts, sizes, strict=True):
        summary.keep_sample(batch(int(start), size), rng)
    rows = summary.sample["row"].to_numpy()
    assert len(rows) == 2000 and len(set(rows)) == 2000
    # each quarter of the run holds about a quarter of the sample
    quarters = np.histogram(rows, bins=4, range=(0, 80_000))[0]
    assert quarters == pytest.approx([500] * 4, abs=100)
