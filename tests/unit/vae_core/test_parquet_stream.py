"""Page-wise reading gives the dataset scanner's batches; the scanner serves what it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vae_core import io
from vae_core.parquet_stream import _page_reader, _scanned, fragment_batches


def frame(n: int, start: int = 0) -> pd.DataFrame:
    rows = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in rows],
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rows, unit="min"),
            "x": np.where(rows % 7 == 0, np.nan, rows * 0.5),
            "n": rows.astype(np.int64),
            "cat": pd.Categorical(np.array(["a", "b", "c"])[rows % 3]),
        }
    )


def write(data: pd.DataFrame, path: Path, row_group_size: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(io.frame_to_table(data), path, row_group_size=row_group_size)


def only_fragment(path: Path) -> tuple[ds.Fragment, pa.Schema]:
    dataset = ds.dataset(path, format="parquet", partitioning="hive")
    (fragment,) = dataset.get_fragments()
    return fragment, dataset.schema


def test_page_wise_batches_equal_the_scanners_in_the_order_asked(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    write(frame(1000), path, row_group_size=300)
    fragment, schema = only_fragment(path)
    columns = ["n", "cat", "id", "x"]  # not the file's order
    assert _page_reader(fragment, schema) is not None
    paged = pa.Table.from_batches(list(fragment_batches(fragment, schema, columns, 128)))
    scanned = pa.Table.from_batches(list(_scanned(fragment, schema, columns, 128)))
    assert paged.column_names == columns
    assert paged.equals(scanned, check_metadata=True)
    assert max(b.num_rows for b in fragment_batches(fragment, schema, columns, 128)) == 128


def test_a_row_group_subset_reads_only_its_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    write(frame(1000), path, row_group_size=300)
    fragment, schema = only_fragment(path)
    part = fragment.subset(row_group_ids=[1, 3])
    paged = pa.Table.from_batches(list(fragment_batches(part, schema, ["n"], 64)))
    assert paged["n"].to_pylist() == list(range(300, 600)) + list(range(900, 1000))


def test_the_scanner_reads_files_whose_columns_need_adding_or_converting(tmp_path: Path) -> None:
    # A hive folder's value becomes a column, and a later file's int32 becomes the first
    # file's int64: both are the scanner's work, and the readers give the same frame.
    first, later = frame(20), frame(20, 20)
    write(first, tmp_path / "day=1" / "a.parquet")
    write(later.astype({"n": np.int32}), tmp_path / "day=2" / "b.parquet")
    dataset = ds.dataset(tmp_path, format="parquet", partitioning="hive")
    assert all(_page_reader(f, dataset.schema) is None for f in dataset.get_fragments())
    streamed = pd.concat(io.iter_batches(tmp_path, batch_size=7), ignore_index=True)
    pd.testing.assert_frame_equal(streamed, io.read_table(tmp_path))
    assert streamed["n"].dtype == np.int64
    assert streamed["day"].tolist() == [1] * 20 + [2] * 20


def test_a_file_with_a_converted_column_is_read_by_the_scanner(tmp_path: Path) -> None:
    write(frame(10), tmp_path / "a.parquet")
    write(frame(10, 10).astype({"x": np.float32}), tmp_path / "b.parquet")
    dataset = ds.dataset(tmp_path, format="parquet")
    readers = [_page_reader(f, dataset.schema) for f in dataset.get_fragments()]
    assert readers[0] is not None and readers[1] is None
    streamed = pd.concat(io.iter_batches(tmp_path, batch_size=4), ignore_index=True)
    assert streamed["x"].dtype == np.float64
    assert streamed["n"].tolist() == list(range(20))
