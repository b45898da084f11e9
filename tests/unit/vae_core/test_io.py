"""Parquet readers name the file at fault; writers never leave a partial file behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.pipeline import writers
from vae_core import io, partitions
from vae_core.errors import EmptyInputError, InputError, SchemaError
from vae_core.partitions import PartitionValueError


def mixed_frame(n: int = 6, start: int = 0) -> pd.DataFrame:
    rows = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in rows],
            "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rows, unit="h"),
            "x": np.where(rows % 3 == 0, np.nan, rows * 1.5),
            "n": rows.astype(np.int64),
            "flag": rows % 2 == 0,
            "cat": pd.Series(["a", None, "b", "c", "a", "b"] * (n // 6 + 1))[:n].to_numpy(),
        }
    )


def write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- read_table ------------------------------------------------------------------------
def test_read_table_round_trips_a_mixed_file(tmp_path: Path) -> None:
    frame = mixed_frame()
    result = io.read_table(write(frame, tmp_path / "data.parquet"))
    pd.testing.assert_frame_equal(result, frame, check_dtype=False)
    assert isinstance(result.index, pd.RangeIndex)
    assert result["x"].isna().sum() == 2


def test_read_table_reads_a_directory_in_path_order_with_a_fresh_index(tmp_path: Path) -> None:
    write(mixed_frame(6, 6), tmp_path / "b.parquet")
    write(mixed_frame(6, 0), tmp_path / "a.parquet")
    (tmp_path / "_SUCCESS").write_text("")  # written by Spark and friends: not data
    (tmp_path / ".a.parquet.crc").write_text("checksum")
    result = io.read_table(tmp_path)
    assert result["n"].tolist() == list(range(12))
    assert list(result.index) == list(range(12))


def test_read_table_turns_hive_partitions_into_columns(tmp_path: Path) -> None:
    write(mixed_frame(6, 0), tmp_path / "day=2024-01-01" / "part-0.parquet")
    write(mixed_frame(6, 6), tmp_path / "day=2024-01-02" / "part-0.parquet")
    result = io.read_table(tmp_path)
    assert len(result) == 12
    assert result["day"].astype(str).tolist() == ["2024-01-01"] * 6 + ["2024-01-02"] * 6


def test_read_table_accepts_a_recursive_glob(tmp_path: Path) -> None:
    write(mixed_frame(6, 0), tmp_path / "x" / "one.parquet")
    write(mixed_frame(6, 6), tmp_path / "y" / "two.parquet")
    write(mixed_frame(6, 12), tmp_path / "y" / "skip.csv.parquet.bak")
    assert len(io.read_table(tmp_path / "**" / "*.parquet")) == 12


def test_read_table_selects_columns(tmp_path: Path) -> None:
    path = write(mixed_frame(), tmp_path / "data.parquet")
    assert list(io.read_table(path, columns=["x", "id"]).columns) == ["x", "id"]


def test_read_table_names_a_missing_column_and_the_path(tmp_path: Path) -> None:
    path = write(mixed_frame(), tmp_path / "data.parquet")
    with pytest.raises(SchemaError, match=r"data\.parquet.*'nope'"):
        io.read_table(path, columns=["x", "nope"])


def test_read_table_keeps_a_named_pandas_index_as_a_column(tmp_path: Path) -> None:
    frame = mixed_frame().set_index("id")
    frame.to_parquet(tmp_path / "indexed.parquet")
    result = io.read_table(tmp_path / "indexed.parquet")
    assert result["id"].tolist() == list(frame.index)
    assert isinstance(result.index, pd.RangeIndex)


def test_missing_path_is_an_input_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.parquet"
    with pytest.raises(io.DataPathError, match="nowhere.parquet: no such file") as caught:
        io.read_table(missing)
    assert isinstance(caught.value, InputError)
    assert isinstance(caught.value, FileNotFoundError)


def test_empty_directory_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(io.DataPathError, match="holds no Parquet files"):
        io.read_table(tmp_path)


def test_glob_without_match_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(io.DataPathError, match="matches no files"):
        io.read_table(tmp_path / "*.parquet")


def test_glob_matching_only_directories_says_so(tmp_path: Path) -> None:
    write(mixed_frame(), tmp_path / "day=1" / "part.parquet")
    with pytest.raises(io.DataPathError, match="matches only directories"):
        io.read_table(tmp_path / "day=*")


def test_a_file_missing_a_column_is_named_not_filled_with_nulls(tmp_path: Path) -> None:
    write(mixed_frame(6, 0), tmp_path / "a.parquet")
    write(mixed_frame(6, 6).drop(columns=["x"]), tmp_path / "b.parquet")
    with pytest.raises(io.DataFileError, match=r"b\.parquet: column\(s\) \['x'\] are missing"):
        io.read_table(tmp_path)
    with pytest.raises(io.DataFileError, match=r"b\.parquet"):
        list(io.iter_batches(tmp_path))
    assert len(io.read_table(tmp_path, columns=["n", "id"])) == 12


def test_a_file_with_a_clashing_column_type_is_named(tmp_path: Path) -> None:
    write(mixed_frame(6, 0), tmp_path / "a.parquet")
    write(mixed_frame(6, 6).assign(n="six"), tmp_path / "b.parquet")
    with pytest.raises(io.DataFileError, match=r"b\.parquet: column 'n' holds text"):
        io.read_table(tmp_path)


def test_a_file_that_is_not_parquet_is_named(tmp_path: Path) -> None:
    csv = tmp_path / "data.parquet"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(io.DataFileError, match=r"data\.parquet: cannot be read as Parquet") as e:
        io.read_table(csv)
    assert e.value.path == str(csv)
    assert isinstance(e.value, InputError)


@pytest.mark.parametrize("bad_name", ["a_bad.parquet", "z_bad.parquet"])
def test_the_bad_file_of_a_directory_is_named(tmp_path: Path, bad_name: str) -> None:
    # Whether pyarrow trips while inferring the schema (first file) or while reading a
    # later one, the message names the culprit, not the directory.
    write(mixed_frame(), tmp_path / "m_good.parquet")
    (tmp_path / bad_name).write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(io.DataFileError, match=bad_name):
        io.read_table(tmp_path)
    with pytest.raises(io.DataFileError, match=bad_name):
        list(io.iter_batches(tmp_path))


def test_a_truncated_file_is_named(tmp_path: Path) -> None:
    path = write(mixed_frame(600), tmp_path / "cut.parquet")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(io.DataFileError, match="cut.parquet"):
        io.read_table(path)


def test_zero_rows_is_an_empty_input_error(tmp_path: Path) -> None:
    path = write(mixed_frame().iloc[:0], tmp_path / "empty.parquet")
    with pytest.raises(EmptyInputError, match="empty.parquet: the data has 0 rows"):
        io.read_table(path)
    with pytest.raises(EmptyInputError, match="0 rows"):
        list(io.iter_batches(path))


# -- iter_batches ----------------------------------------------------------------------
def test_iter_batches_streams_every_row_once_in_order(tmp_path: Path) -> None:
    write(mixed_frame(12, 0), tmp_path / "a.parquet")
    write(mixed_frame(6, 12), tmp_path / "b.parquet")
    batches = list(io.iter_batches(tmp_path, batch_size=5))
    assert all(0 < len(b) <= 5 for b in batches)
    combined = pd.concat(batches, ignore_index=True)
    pd.testing.assert_frame_equal(combined, io.read_table(tmp_path))


def test_iter_batches_selects_columns(tmp_path: Path) -> None:
    path = write(mixed_frame(), tmp_path / "data.parquet")
    (batch,) = io.iter_batches(path, columns=["n"])
    assert list(batch.columns) == ["n"]


def test_iter_batches_rejects_a_bad_batch_size(tmp_path: Path) -> None:
    path = write(mixed_frame(), tmp_path / "data.parquet")
    with pytest.raises(InputError, match="batch_size=0"):
        next(io.iter_batches(path, batch_size=0))


# -- write_parquet_atomic --------------------------------------------------------------
def test_write_parquet_atomic_round_trips_and_creates_parents(tmp_path: Path) -> None:
    frame = mixed_frame()
    target = tmp_path / "deep" / "er" / "out.parquet"
    assert writers.write_parquet_atomic(frame, target) == target
    pd.testing.assert_frame_equal(io.read_table(target), frame, check_dtype=False)
    assert "__index_level_0__" not in pq.read_schema(target).names
    assert leftovers(target.parent) == []


def test_write_parquet_atomic_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    writers.write_parquet_atomic(mixed_frame(6), target)
    writers.write_parquet_atomic(mixed_frame(12), target)
    assert len(io.read_table(target)) == 12


def test_write_parquet_atomic_syncs_before_renaming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(writers.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(
        io.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1]
    )
    writers.write_parquet_atomic(mixed_frame(), tmp_path / "out.parquet")
    assert events.index("fsync") < events.index("replace")


def test_failed_conversion_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    writers.write_parquet_atomic(mixed_frame(6), target)
    before = target.read_bytes()
    unconvertible = pd.DataFrame({"mixed": [1, "two", object()]})
    with pytest.raises((pa.ArrowException, TypeError, ValueError)):
        writers.write_parquet_atomic(unconvertible, target)
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_failed_rename_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(writers.os, "replace", refuse)
    with pytest.raises(OSError, match="disk on fire"):
        writers.write_parquet_atomic(mixed_frame(), tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []


# -- ParquetBatchWriter ----------------------------------------------------------------
def test_batch_writer_appears_only_on_close(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    with writers.ParquetBatchWriter(target) as writer:
        writer.write(mixed_frame(6, 0))
        writer.write(mixed_frame(6, 6))
        assert not target.exists()
    assert writer.rows_written == 12
    assert io.read_table(target)["n"].tolist() == list(range(12))
    assert leftovers(tmp_path) == []


def test_batch_writer_error_keeps_the_previous_output(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    writers.write_parquet_atomic(mixed_frame(6), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="scoring failed"):
        with writers.ParquetBatchWriter(target) as writer:
            writer.write(mixed_frame(12))
            raise RuntimeError("scoring failed")
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_batch_writer_rejects_a_batch_with_other_columns(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    with pytest.raises(InputError, match="does not match the schema of the first batch"):
        with writers.ParquetBatchWriter(target) as writer:
            writer.write(mixed_frame(6))
            writer.write(pd.DataFrame({"other": [1.0]}))
    assert not target.exists()
    assert leftovers(tmp_path) == []


def test_batch_writer_without_batches(tmp_path: Path) -> None:
    with pytest.raises(EmptyInputError, match="nothing was written"):
        with writers.ParquetBatchWriter(tmp_path / "none.parquet"):
            pass
    assert list(tmp_path.iterdir()) == []

    schema = pa.schema([("score", pa.float64())])
    with writers.ParquetBatchWriter(tmp_path / "empty.parquet", schema=schema):
        pass
    assert pq.read_table(tmp_path / "empty.parquet").num_rows == 0


def test_batch_writer_abort_outside_a_with_block(tmp_path: Path) -> None:
    writer = writers.ParquetBatchWriter(tmp_path / "out.parquet")
    writer.write(mixed_frame())
    writer.abort()
    assert list(tmp_path.iterdir()) == []


# -- partitions ------------------------------------------------------------------------
def test_partitions_are_files_in_read_order_or_row_group_ranges(tmp_path: Path) -> None:
    frame = pd.DataFrame({"n": np.arange(1000)})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "b.parquet", row_group_size=100)
    pq.write_table(pa.Table.from_pandas(frame.iloc[:10]), tmp_path / "a.parquet")
    whole = partitions.list_partitions(tmp_path)
    assert [(Path(p.file).name, p.row_groups, p.n_rows) for p in whole] == [
        ("a.parquet", None, 10),
        ("b.parquet", None, 1000),
    ]
    split = partitions.list_partitions(tmp_path, max_rows=300)
    assert [p.row_groups for p in split] == [None, (0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert [p.name for p in split] == [f"part-{i:05d}" for i in range(5)]
    # reading the partitions one by one gives every row once, in order
    rows = [
        frame_["n"].tolist()
        for part in split
        for frame_ in io.iter_batches(tmp_path, batch_size=64, partition=part)
    ]
    assert sum(rows, []) == list(range(10)) + list(range(1000))


def test_an_empty_partition_is_not_an_error_but_empty_data_is(tmp_path: Path) -> None:
    pq.write_table(pa.table({"n": pa.array([], pa.int64())}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"n": [1, 2]}), tmp_path / "b.parquet")
    empty, full = partitions.list_partitions(tmp_path)
    assert list(io.iter_batches(tmp_path, partition=empty)) == []
    assert len(next(io.iter_batches(tmp_path, partition=full))) == 2
    with pytest.raises(EmptyInputError):
        list(io.iter_batches(tmp_path / "a.parquet"))


def test_a_partition_whose_file_has_gone_is_named(tmp_path: Path) -> None:
    pq.write_table(pa.table({"n": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"n": [2]}), tmp_path / "b.parquet")
    parts = partitions.list_partitions(tmp_path)
    (tmp_path / "b.parquet").unlink()
    with pytest.raises(io.DataPathError, match="b.parquet.*has gone"):
        list(io.iter_batches(tmp_path, partition=parts[1]))


def test_batch_writer_dictionary_encodes_text_and_leaves_floats_uncompressed(
    tmp_path: Path,
) -> None:
    frame = pd.DataFrame(
        {
            "id": np.arange(1000),
            "score": np.random.default_rng(0).random(1000),
            "top_feature_1": np.array(["bytes", "rate", "port"])[np.arange(1000) % 3],
        }
    )
    with writers.ParquetBatchWriter(tmp_path / "scores.parquet") as writer:
        writer.write(frame)
    chunk = pq.ParquetFile(tmp_path / "scores.parquet").metadata.row_group(0)
    columns = {chunk.column(i).path_in_schema: chunk.column(i) for i in range(3)}
    assert "RLE_DICTIONARY" in columns["top_feature_1"].encodings
    assert "RLE_DICTIONARY" not in columns["score"].encodings
    assert "RLE_DICTIONARY" not in columns["id"].encodings  # keys are distinct
    assert columns["score"].compression == "UNCOMPRESSED"
    assert columns["id"].compression == "SNAPPY"
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "scores.parquet"), frame)


def test_batch_writer_leaves_statistics_out_only_where_asked(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"id": np.arange(10), "score": np.linspace(0.0, 1.0, 10), "name": ["a", "b"] * 5}
    )
    with writers.ParquetBatchWriter(tmp_path / "s.parquet", without_statistics={"name"}) as writer:
        writer.write(frame)
    chunk = pq.ParquetFile(tmp_path / "s.parquet").metadata.row_group(0)
    columns = {chunk.column(i).path_in_schema: chunk.column(i) for i in range(3)}
    assert not columns["name"].is_stats_set
    assert columns["score"].statistics.max == 1.0 and columns["id"].statistics.min == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "s.parquet"), frame)


def test_readers_refuse_a_hive_folder_that_contradicts_the_files_column(tmp_path: Path) -> None:
    """Every reader, not only the partition lister: a folder's value would otherwise
    replace the file's own column for every row without a word."""
    write(pd.DataFrame({"x": [1.0], "channel": ["web"]}), tmp_path / "channel=web" / "a.parquet")
    write(
        pd.DataFrame({"x": [1.0, 2.0], "channel": ["mobile_app", "web"]}),
        tmp_path / "channel=mobile_app" / "b.parquet",
    )
    with pytest.raises(PartitionValueError, match=r"channel=mobile_app: the folder says"):
        io.read_table(tmp_path)
    with pytest.raises(PartitionValueError, match=r"has its own 'channel' column holding 'web'"):
        list(io.iter_batches(tmp_path, batch_size=10))


def test_readers_accept_hive_folders_that_agree_with_the_files_column(tmp_path: Path) -> None:
    # Written by pyarrow as plain strings: pandas' large strings clash with the folder's
    # type in pyarrow itself, agreeing or not (a DataFileError, never a silent rewrite).
    (tmp_path / "channel=web").mkdir()
    pq.write_table(pa.table({"x": [1.0], "channel": ["web"]}), tmp_path / "channel=web" / "a.pq")
    assert io.read_table(tmp_path)["channel"].astype(str).tolist() == ["web"]
