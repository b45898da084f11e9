"""Outputs never inside the input, and hive folders that contradict a file's own column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from flows.publishing.locations import OutputInsideInputError, check_output_outside_input
from vae_core.errors import InputError
from vae_core.io import read_table
from vae_core.partitions import PartitionValueError, check_hive_folders, list_partitions


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "in" / "day=1").mkdir(parents=True)
    return tmp_path / "in"


@pytest.mark.parametrize(
    ("input_path", "output"),
    [
        ("in", "in/out"),
        ("in", "in"),
        ("in/", "in/../in/scores"),
        ("in/**/*.parquet", "in/out"),
        ("in/*/*/*/*.parquet", "in/out"),  # reaches in/out/runs/<id>/scores.parquet
    ],
)
def test_an_output_inside_the_input_is_refused(
    data: Path, monkeypatch: pytest.MonkeyPatch, input_path: str, output: str
) -> None:
    monkeypatch.chdir(data.parent)
    with pytest.raises(OutputInsideInputError) as caught:
        check_output_outside_input(input_path, output)
    assert isinstance(caught.value, InputError)  # exit 2
    message = str(caught.value)
    assert f"the output folder {output} is inside the input {input_path}" in message


@pytest.mark.parametrize(
    ("input_path", "output"),
    [
        ("in", "out"),
        ("in", "in-scores"),  # a sibling whose name starts the same
        ("in/*.parquet", "in/out"),  # the glob reads only the top folder
        ("in/day=1/x.parquet", "in/day=1/out"),  # one file: no input folder
        ("in/*/*/*/*/*.parquet", "in/out"),
        ("s3://bucket/in/", "s3://bucket/in/out"),  # object stores are not checked here
    ],
)
def test_outputs_beside_the_input_are_fine(
    data: Path, monkeypatch: pytest.MonkeyPatch, input_path: str, output: str
) -> None:
    monkeypatch.chdir(data.parent)
    check_output_outside_input(input_path, output)


def write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_a_hive_folder_contradicting_the_files_column_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "channel=web" / "a.parquet", pa.table({"x": [1], "channel": ["web"]}))
    write(
        tmp_path / "channel=mobile_app" / "b.parquet",
        pa.table({"x": [1, 2], "channel": ["mobile_app", "web"]}),
    )
    expected = (
        rf"{tmp_path}/channel=mobile_app: the folder says channel='mobile_app' but the file "
        r"b.parquet in it has its own 'channel' column holding 'web'"
    )
    with pytest.raises(PartitionValueError, match=expected) as caught:
        list_partitions(tmp_path)
    assert isinstance(caught.value, InputError)
    # pyarrow alone would have replaced the file's values with the folder's.
    plain = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert sorted(plain.column("channel").to_pylist()) == ["mobile_app", "mobile_app", "web"]


def test_pandas_written_text_is_checked_before_pyarrow_clashes_on_the_type(tmp_path) -> None:
    folder = tmp_path / "channel=mobile_app"
    folder.mkdir()
    pd.DataFrame({"x": [1], "channel": ["web"]}).to_parquet(folder / "a.parquet")
    with pytest.raises(PartitionValueError, match="holding 'web'"):
        list_partitions(tmp_path)


@pytest.mark.parametrize(
    ("folder", "column"),
    [
        ("channel=web", pa.array(["web", None])),  # nulls do not contradict
        ("year=2024", pa.array([2024, 2024])),
        ("year=2024", pa.array([2024.0])),
        ("day=2024-01-05", pa.array([pd.Timestamp("2024-01-05").date()])),
        ("city=S%C3%A3o%20Paulo", pa.array(["São Paulo"])),  # folder names are URI-encoded
        ("channel=__HIVE_DEFAULT_PARTITION__", pa.array(["web"])),  # the folder is null
    ],
)
def test_agreeing_values_pass(tmp_path: Path, folder: str, column: pa.Array) -> None:
    name = folder.partition("=")[0]
    write(tmp_path / folder / "a.parquet", pa.table({"x": range(len(column)), name: column}))
    check_hive_folders(tmp_path)


def test_only_directories_and_data_files_are_checked(tmp_path: Path) -> None:
    bad = pa.table({"x": [1], "channel": ["web"]})
    write(tmp_path / "_tmp" / "channel=app" / "a.parquet", bad)  # skipped, as pyarrow does
    write(tmp_path / "channel=app" / ".b.parquet", bad)
    write(tmp_path / "plain" / "c.parquet", bad)  # no hive folder
    check_hive_folders(tmp_path)
    check_hive_folders(tmp_path / "plain" / "c.parquet")  # a file: no folders are read


def test_listing_checks_files_whose_column_agrees_with_the_folder(tmp_path: Path) -> None:
    for value in ("web", "app"):
        write(tmp_path / f"channel={value}" / "a.parquet", pa.table({"channel": [value, None]}))
    assert [Path(p.file).parent.name for p in list_partitions(tmp_path)] == [
        "channel=app",
        "channel=web",
    ]


def test_a_glob_reads_no_folder_values_so_nothing_is_replaced(tmp_path: Path) -> None:
    write(tmp_path / "channel=app" / "a.parquet", pa.table({"channel": ["web"]}))
    pattern = str(tmp_path / "*" / "*.parquet")
    assert len(list_partitions(pattern)) == 1
    assert read_table(pattern)["channel"].tolist() == ["web"]
