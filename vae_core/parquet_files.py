"""Locating Parquet data and opening it as one dataset, with errors that name the file.

A data path is one file, a directory (hive partitions such as ``day=2024-01-01/`` become
columns) or a glob. Every failure is an ``InputError`` that names the path, because "Parquet
magic bytes not found" is useless when a job reads four hundred files. ``vae_core.io``
reads what is opened here, ``vae_core.partitions`` splits it into parts.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from vae_core.errors import InputError, first_line

PathLike = str | os.PathLike[str]

_GLOB_CHARACTERS = frozenset("*?[")
#: pyarrow's own errors for unreadable or mismatched files, plus plain I/O failures.
ARROW_ERRORS = (pa.ArrowException, OSError)


class DataPathError(InputError, FileNotFoundError):
    """The data path does not exist, or a directory or glob holds no Parquet file."""


class DataFileError(InputError):
    """A file cannot be read as Parquet (not Parquet, truncated, or a schema that clashes)."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in _GLOB_CHARACTERS)


def _expand_glob(pattern: str) -> list[str]:
    """Files matched by ``pattern`` (``**`` recurses), sorted so reads are reproducible."""
    matches = sorted(glob.glob(pattern, recursive=True))
    files = [m for m in matches if os.path.isfile(m)]
    if not files and matches:
        raise DataPathError(
            f"{pattern}: the pattern matches only directories; point at their parent "
            "directory (hive partitions become columns) or end the pattern in '*.parquet'."
        )
    if not files:
        raise DataPathError(
            f"{pattern}: the pattern matches no files. Check the path and the wildcard."
        )
    return files


def open_dataset(path: PathLike) -> ds.Dataset:
    """A pyarrow dataset over a file, a directory (hive partitions) or a glob."""
    text = os.fspath(path)
    if os.path.isdir(text):
        dataset = _dataset_or_file_error(text, partitioning="hive")
        if not dataset.files:
            raise DataPathError(
                f"{text}: the directory holds no Parquet files (files starting with '.' "
                "or '_' are skipped). Point at the directory the data was written to."
            )
        return dataset
    if os.path.isfile(text):
        return _dataset_or_file_error(text)
    if _is_glob(text):
        return _dataset_or_file_error(_expand_glob(text))
    raise DataPathError(
        f"{text}: no such file or directory. Check the path (and the working directory "
        "it is relative to)."
    )


def _dataset_or_file_error(source: str | list[str], partitioning: str | None = None) -> ds.Dataset:
    """Build the dataset; if pyarrow refuses, find and name the file it choked on."""
    try:
        return ds.dataset(source, format="parquet", partitioning=partitioning)
    except ARROW_ERRORS as exc:
        culprit = _first_unreadable(source)
        if culprit is None:
            raise file_error(str(source), exc) from exc
        raise file_error(*culprit) from exc


def _first_unreadable(source: str | list[str]) -> tuple[str, BaseException] | None:
    """The first file whose Parquet footer cannot be read, and why; None if all can."""
    if isinstance(source, list):
        files = source
    elif os.path.isdir(source):
        files = sorted(str(p) for p in Path(source).rglob("*") if _is_data_file(p, source))
    else:
        files = [source]
    for file in files:
        try:
            pq.read_schema(file)
        except ARROW_ERRORS as exc:
            return file, exc
    return None


def _is_data_file(path: Path, root: str) -> bool:
    """What pyarrow reads from a directory: files with no part starting with '.' or '_'."""
    parts = path.relative_to(root).parts
    return path.is_file() and not any(part.startswith((".", "_")) for part in parts)


def file_error(path: str, exc: BaseException) -> DataFileError:
    """The error for a file pyarrow cannot read, naming the file and pyarrow's reason."""
    return DataFileError(
        f"{path}: cannot be read as Parquet ({first_line(exc)}). Check that the file is "
        "Parquet, was written completely, and has the same columns as the others.",
        path,
    )


def sorted_fragments(dataset: ds.Dataset) -> list[ds.Fragment]:
    """The dataset's files in the order every reader goes through them."""
    # Sorted by path so directory reads come back in a stable order on every filesystem.
    return sorted(dataset.get_fragments(), key=lambda fragment: fragment.path)
