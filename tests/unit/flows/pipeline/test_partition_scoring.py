"""Partition scoring's bounded summaries and the concatenation of partition outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from flows.pipeline import summary as run_summary
from flows.pipeline.partitions import concatenate_parts
from flows.pipeline.summary import PartitionResult, RowAccountingError
from vae_core.scoring import ScoreArrays
from vae_core.streaming import TabularScores, scored_frame, scored_table


def batch(start: int, n: int, rng: np.random.Generator | None = None) -> pd.DataFrame:
    rows = np.arange(start, start + n)
    frame = pd.DataFrame({"row": rows, "score": rows.astype(float), "is_anomaly": False})
    if rng is not None:
        frame["_sample_key"] = rng.random(n)
    return frame


def test_top_rows_are_the_highest_scores_across_batches() -> None:
    summary = PartitionResult()
    for start in range(0, 1000, 100):
        summary.keep_top(batch(start, 100), top_n=5)
    assert summary.top["row"].tolist() == [999, 998, 997, 996, 995]


def test_sample_is_bounded_and_uniform_over_the_whole_run(monkeypatch) -> None:
    monkeypatch.setattr(run_summary, "SAMPLE_SIZE", 2000)
    summary = PartitionResult()
    rng = np.random.default_rng(0)
    # uneven batches: a batch-weighted scheme would over-represent the small ones
    starts, sizes = np.cumsum([0, 100, 50_000, 300, 29_600])[:-1], [100, 50_000, 300, 29_600]
    for start, size in zip(starts, sizes, strict=True):
        summary.keep_sample(batch(int(start), size, rng))
    rows = summary.sample["row"].to_numpy()
    assert len(rows) == 2000 and len(set(rows)) == 2000
    # each quarter of the run holds about a quarter of the sample
    quarters = np.histogram(rows, bins=4, range=(0, 80_000))[0]
    assert quarters == pytest.approx([500] * 4, abs=100)


def test_merging_partitions_equals_one_pass_over_all_rows(monkeypatch) -> None:
    monkeypatch.setattr(run_summary, "SAMPLE_SIZE", 300)
    rng = np.random.default_rng(1)
    parts = [batch(0, 400, rng), batch(400, 250, rng), batch(650, 500, rng)]
    one_pass = PartitionResult()
    for part in parts:
        one_pass.keep_top(part, top_n=7)
        one_pass.keep_sample(part)
    merged = PartitionResult()
    for part in parts:
        piece = PartitionResult(rows_in=len(part), rows_scored=len(part), reasons={"x": 1})
        piece.keep_top(part, top_n=7)
        piece.keep_sample(part)
        merged.merge(piece, top_n=7)
    assert merged.rows_in == merged.rows_scored == 1150
    assert merged.reasons == {"x": 3}
    assert merged.top["row"].tolist() == one_pass.top["row"].tolist()
    assert sorted(merged.sample["row"]) == sorted(one_pass.sample["row"])


def test_accounting_mismatch_is_an_error() -> None:
    with pytest.raises(RowAccountingError, match="rows read 10 != rows scored 9"):
        PartitionResult(rows_in=10, rows_scored=9, rows_quarantined=0).check_accounting()


def test_concatenate_parts_keeps_order_and_skips_absent_parts(tmp_path: Path) -> None:
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pd.DataFrame({"id": [1, 2], "label": ["x", "y"]}).to_parquet(first)
    # an empty part whose text column has no type: the schema comes from a part with rows
    pd.DataFrame(
        {"id": pd.Series([], dtype="int64"), "label": pd.Series([], dtype=object)}
    ).to_parquet(second)
    third = tmp_path / "c.parquet"
    pd.DataFrame({"id": [3], "label": ["z"]}).to_parquet(third)
    target = tmp_path / "out.parquet"
    rows = concatenate_parts([second, first, tmp_path / "absent.parquet", third], target)
    assert rows == 3
    assert pq.read_table(target).to_pandas()["id"].tolist() == [1, 2, 3]


def test_concatenate_nothing_removes_a_stale_target(tmp_path: Path) -> None:
    target = tmp_path / "quarantine.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(target)
    assert concatenate_parts([tmp_path / "absent.parquet"], target) == 0
    assert not target.exists()


def test_batches_of_wide_data_are_cut_to_the_cell_budget() -> None:
    from flows.pipeline.partitions import BATCH_CELLS, MIN_BATCH_ROWS, batch_rows

    assert batch_rows(65_536, 20) == 65_536
    assert batch_rows(65_536, 200) == BATCH_CELLS // 200
    assert batch_rows(65_536, 10**6) == MIN_BATCH_ROWS
    assert batch_rows(7, 10**6) == 7  # a small configured batch is kept


def score_arrays(score: np.ndarray) -> ScoreArrays:
    """Scores of rows whose shares name one of three columns."""
    n = len(score)
    shares = np.random.default_rng(3).dirichlet(np.ones(3), size=n)
    return ScoreArrays(score, np.zeros(n), score, shares, ("a", "b", "c"))


def test_array_summaries_equal_the_summaries_of_whole_scored_frames(monkeypatch) -> None:
    """keep_top_of / keep_sample_of build rows only for candidates; the result must be
    exactly what the frame versions keep, ties at the cut included."""
    monkeypatch.setattr(run_summary, "SAMPLE_SIZE", 500)
    rng = np.random.default_rng(7)
    by_arrays, by_frames = PartitionResult(), PartitionResult()
    start = 0
    for size in (300, 900, 40, 1200, 700):
        score = rng.integers(0, 50, size).astype(float)  # many ties
        carried = pd.DataFrame({"row": np.arange(start, start + size)})
        arrays, keys = score_arrays(score), rng.random(size)
        scored = TabularScores(carried, arrays, 45.0, ("row",), pd.RangeIndex(size))
        everything = np.arange(size)
        by_arrays.keep_top_of(scored, everything, top_n=9, row_offset=None)
        by_arrays.keep_sample_of(scored, everything, keys=keys)
        frame = scored_frame(carried, arrays, threshold=45.0)
        by_frames.keep_top(frame, top_n=9)
        sample = frame[["score", "is_anomaly", "row"]].assign(_sample_key=keys)
        by_frames.keep_sample(sample)
        start += size
    pd.testing.assert_frame_equal(
        by_arrays.top.reset_index(drop=True), by_frames.top.reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(
        by_arrays.sample.reset_index(drop=True), by_frames.sample.reset_index(drop=True)
    )
    assert len(by_arrays.sample) == 500 and by_arrays.top["score"].min() >= 48


def test_scored_table_is_the_scored_frame_in_arrow() -> None:
    carried = pd.DataFrame({"id": ["a", "b", "c", "d"]})
    arrays = score_arrays(np.array([1.0, 5.0, 3.0, 0.5]))
    table = scored_table(carried, arrays, threshold=2.0)
    frame = scored_frame(carried, arrays, threshold=2.0)
    assert table.column_names == list(frame.columns)
    pd.testing.assert_frame_equal(table.to_pandas(), frame)
