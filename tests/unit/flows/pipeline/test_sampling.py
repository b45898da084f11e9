"""Uniform, reproducible samples of data larger than memory, drawn in one pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.pipeline.sampling import merge_samples, sample_partition, sample_rows
from vae_core.errors import EmptyInputError
from vae_core.partitions import list_partitions


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    """60,000 rows numbered 0.. over three files of uneven size, in small row groups."""
    start = 0
    for name, n in (("a", 5_000), ("b", 40_000), ("c", 15_000)):
        frame = pd.DataFrame({"n": np.arange(start, start + n), "even": np.arange(n) % 2 == 0})
        pq.write_table(
            pa.Table.from_pandas(frame), tmp_path / f"{name}.parquet", row_group_size=4_000
        )
        start += n
    return tmp_path


def test_sample_is_exact_size_unique_in_input_order_and_uniform(data: Path) -> None:
    frame, info = sample_rows(data, 3_000, seed=1, batch_size=1_000)
    rows = frame["n"].to_numpy()
    assert (info.rows_seen, info.rows_sampled, info.sampled) == (60_000, 3_000, True)
    assert len(set(rows)) == 3_000 and (np.diff(rows) > 0).all()
    assert list(frame.columns) == ["n", "even"]
    # the small first file is not over-represented: each sixth holds about a sixth
    assert np.histogram(rows, bins=6, range=(0, 60_000))[0] == pytest.approx([500] * 6, abs=90)


def test_sample_depends_on_the_seed_not_on_the_batch_size(data: Path) -> None:
    first, _ = sample_rows(data, 2_000, seed=7, batch_size=512)
    again, _ = sample_rows(data, 2_000, seed=7, batch_size=30_000)
    other, _ = sample_rows(data, 2_000, seed=8, batch_size=512)
    pd.testing.assert_frame_equal(first, again)
    assert len(set(first["n"]) & set(other["n"])) < 500


def test_partitions_sampled_separately_merge_into_the_same_sample(data: Path) -> None:
    whole, _ = sample_rows(data, 2_500, seed=3)
    parts = [sample_partition(data, p, 2_500, seed=3) for p in list_partitions(data)]
    merged, seen = merge_samples(list(reversed(parts)), 2_500)
    assert seen == 60_000
    pd.testing.assert_frame_equal(merged, whole)


def test_fewer_rows_than_asked_returns_every_row_in_order(data: Path) -> None:
    frame, info = sample_rows(data / "a.parquet", 10_000)
    assert frame["n"].tolist() == list(range(5_000))
    assert not info.sampled


def test_a_row_filter_applies_before_sampling(data: Path) -> None:
    frame, info = sample_rows(data, 1_000, keep=lambda batch: batch["even"].to_numpy())
    assert info.rows_seen == 30_000 and frame["even"].all()
    with pytest.raises(EmptyInputError, match="none passed the row filter"):
        sample_rows(data, 10, keep=lambda batch: np.zeros(len(batch), dtype=bool))
