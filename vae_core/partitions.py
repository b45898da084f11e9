"""Partitions of a dataset: files, or row-group ranges of large files, read on their own.

``list_partitions`` splits the data at a path into parts in the order
``vae_core.io.iter_batches`` reads it, so that parts can be scored in parallel and their
outputs combined in input order; ``iter_batches(path, partition=part)`` reads one part.

Pure library: no Prefect, no MLflow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vae_core.errors import InputError, SchemaError
from vae_core.parquet_files import (
    ARROW_ERRORS,
    DataFileError,
    DataPathError,
    PathLike,
    file_error,
    open_dataset,
    sorted_fragments,
)


@dataclass(frozen=True)
class Partition:
    """A unit of parallel work: one file, or a range of row groups of a large file.

    Plain data (picklable), so it can be sent to another process or machine, which reads
    it with ``iter_batches(source, partition=partition)``.
    """

    index: int
    file: str
    row_groups: tuple[int, ...] | None  # None: the whole file
    n_rows: int

    @property
    def name(self) -> str:
        """A stable name for the partition's outputs, sortable in input order."""
        return f"part-{self.index:05d}"


def list_partitions(path: PathLike, max_rows: int | None = None) -> list[Partition]:
    """Split the data at ``path`` into partitions, in the order ``iter_batches`` reads it.

    Each file is one partition; with ``max_rows``, a file with more rows is split at
    row-group boundaries into partitions of about ``max_rows`` rows (a row group is the
    smallest unit Parquet can read on its own, so a single larger group stays whole).
    """
    if max_rows is not None and max_rows < 1:
        raise InputError(f"max_rows={max_rows!r} must be at least 1.")
    dataset = open_checked_dataset(path)
    folder = os.fspath(path) if os.path.isdir(path) else None
    partitions: list[Partition] = []
    for fragment in sorted_fragments(dataset):
        if folder is not None:
            check_fragment_folders(fragment, folder)
        try:
            sizes = [group.num_rows for group in fragment.row_groups]
        except ARROW_ERRORS as exc:
            raise file_error(fragment.path, exc) from exc
        for groups in _group_ranges(sizes, max_rows):
            partitions.append(
                Partition(
                    index=len(partitions),
                    file=fragment.path,
                    row_groups=None if len(groups) == len(sizes) else tuple(groups),
                    n_rows=sum(sizes[g] for g in groups),
                )
            )
    return partitions


def _group_ranges(sizes: Sequence[int], max_rows: int | None) -> list[list[int]]:
    """Consecutive row groups packed into ranges of at most ``max_rows`` rows (or one group)."""
    if max_rows is None or sum(sizes) <= max_rows:
        return [list(range(len(sizes)))]
    ranges: list[list[int]] = [[]]
    rows = 0
    for group, size in enumerate(sizes):
        if ranges[-1] and rows + size > max_rows:
            ranges.append([])
            rows = 0
        ranges[-1].append(group)
        rows += size
    return ranges


def partition_fragment(
    fragments: Sequence[ds.Fragment], partition: Partition, path: PathLike
) -> ds.Fragment:
    """The part of ``fragments`` that ``partition`` names; its file must still be there."""
    for fragment in fragments:
        if fragment.path == partition.file:
            if partition.row_groups is None:
                return fragment
            return fragment.subset(row_group_ids=list(partition.row_groups))
    raise DataPathError(
        f"{partition.file}: this file of {os.fspath(path)} has gone since the partitions "
        "were listed; rerun the job on the current data."
    )


#: The folder name pyarrow's hive partitioning reads as a null value.
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class PartitionValueError(SchemaError):
    """A hive folder's value (``channel=web/``) contradicts the file's own column."""


def open_checked_dataset(path: PathLike) -> ds.Dataset:
    """``open_dataset``, but a folder whose value clashes with a file's own column of
    another type is named as such, not as pyarrow's schema clash that names neither."""
    try:
        return open_dataset(path)
    except DataFileError:
        check_hive_folders(path)
        raise


def check_hive_folders(path: PathLike) -> None:
    """Refuse a file whose own column disagrees with a hive folder of the same name above it.

    pyarrow gives every row of the file the folder's value, so ``channel=mobile_app/`` over
    a file with its own ``channel`` column would silently rewrite that column (or, when the
    types differ, fail with a schema clash that names neither). Only the files under
    ``name=value`` folders are looked at, and of those only the ones that have such a column
    are read, that column alone. Nulls in the file do not contradict the folder.

    This reads the footer of every file under a hive folder; ``list_partitions`` calls it
    only when the data cannot be opened, and checks each file it lists with
    ``check_fragment_folders`` instead, whose footer it reads anyway.
    """
    root = os.fspath(path)
    if not os.path.isdir(root):
        return  # hive folders are read as columns only when a directory is the input
    for file in sorted(Path(root).rglob("*")):
        relative = file.relative_to(root).parts
        if not file.is_file() or any(part.startswith((".", "_")) for part in relative):
            continue  # not read as data
        folders = _folders(relative)
        if folders:
            try:
                own = pq.read_schema(file).names
            except ARROW_ERRORS as exc:
                raise file_error(str(file), exc) from exc
            _check_file_against(file, folders, own)


def check_fragment_folders(fragment: ds.Fragment, root: PathLike) -> None:
    """``check_hive_folders`` for one file of the dataset opened at the directory ``root``."""
    folders = _folders(Path(os.path.relpath(fragment.path, root)).parts)
    if not folders:
        return
    try:
        own = fragment.physical_schema.names
    except ARROW_ERRORS as exc:
        raise file_error(fragment.path, exc) from exc
    _check_file_against(Path(fragment.path), folders, own)


def check_fragment_keys(fragment: ds.Fragment) -> None:
    """``check_hive_folders`` for one file of a dataset opened anywhere: the folders are
    those whose names pyarrow read as the file's partition keys (any others above the
    dataset's root are not partitions)."""
    keys = ds.get_partition_keys(fragment.partition_expression)
    if not keys:
        return
    hive = [_hive_part(part) for part in Path(fragment.path).parts[:-1] if "=" in part]
    folders = {name: value for name, value in hive if name in keys}
    try:
        own = fragment.physical_schema.names
    except ARROW_ERRORS as exc:
        raise file_error(fragment.path, exc) from exc
    _check_file_against(Path(fragment.path), folders, own)


def _folders(relative: Sequence[str]) -> dict[str, str]:
    """``{name: value}`` of the hive folders among the folders of a relative file path."""
    return dict(_hive_part(part) for part in relative[:-1] if "=" in part)


def _hive_part(part: str) -> tuple[str, str]:
    name, _, value = part.partition("=")
    return unquote(name), unquote(value)


def _check_file_against(file: Path, folders: dict[str, str], own: Sequence[str]) -> None:
    for name, value in folders.items():
        if name not in own or value == _HIVE_NULL:
            continue
        try:
            column = pq.ParquetFile(file).read(columns=[name]).column(name)
        except ARROW_ERRORS as exc:
            raise file_error(str(file), exc) from exc
        distinct = pc.unique(column.drop_null()).to_pylist()
        other = next((v for v in distinct if not _same(v, value)), None)
        if other is not None:
            folder = next(p for p in file.parents if _hive_part(p.name)[0] == name)
            raise PartitionValueError(
                f"{folder}: the folder says {name}={value!r} but the file {file.name} in it "
                f"has its own '{name}' column holding {other!r}; rename the column or the "
                "folder (the folder's value would replace the file's)."
            )


def _same(own: object, folder: str) -> bool:
    """Whether a file's value is the one a folder name spells (text, number, date)."""
    if str(own) == folder:
        return True
    if isinstance(own, int | float) and not isinstance(own, bool):
        try:
            return float(folder) == own
        except ValueError:
            return False
    isoformat = getattr(own, "isoformat", None)
    return isoformat is not None and isoformat() == folder
