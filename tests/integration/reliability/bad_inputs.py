"""The bad-input catalogue as data: how to build each bad input and what must happen.

Shared by the CLI and the flow tests of this folder, so that every entry point is held to
the same entry. File-level entries build a path (a file, a directory, or nothing) and must
stop the job with an input error naming the file and saying what to do; row-level entries
change some rows of a good frame and must be scored finitely or quarantined with a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flows.pipeline.writers import write_parquet_atomic

KEY = "payment_id"
SCORE_COLUMNS = ("recon_error", "kl", "score")


@dataclass(frozen=True)
class FileCase:
    """A bad input that must stop the job: ``build`` returns the path to give the job."""

    build: Callable[[Path, pd.DataFrame], Path]
    #: Fragments the one-line error must contain; "{path}" stands for the built path and
    #: "{culprit}" for the file inside it that is at fault.
    fragments: tuple[str, ...]
    culprit: str | None = None  # name of the file at fault inside a built directory


def _missing(tmp: Path, frame: pd.DataFrame) -> Path:
    return tmp / "nowhere" / "data.parquet"


def _empty_directory(tmp: Path, frame: pd.DataFrame) -> Path:
    folder = tmp / "empty"
    folder.mkdir()
    return folder


def _zero_rows(tmp: Path, frame: pd.DataFrame) -> Path:
    return write_parquet_atomic(frame.head(0), tmp / "zero.parquet")


def _truncated(tmp: Path, frame: pd.DataFrame) -> Path:
    path = write_parquet_atomic(frame, tmp / "truncated.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])  # an upload cut short: no footer
    return path


def _corrupt(tmp: Path, frame: pd.DataFrame) -> Path:
    path = write_parquet_atomic(frame, tmp / "corrupt.parquet")
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 4, len(data) // 2, 7):  # footer intact, pages garbled
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _not_parquet(tmp: Path, frame: pd.DataFrame) -> Path:
    path = tmp / "export.parquet"
    frame.head(20).to_csv(path, index=False)
    return path


def _missing_column(tmp: Path, frame: pd.DataFrame) -> Path:
    return write_parquet_atomic(frame.drop(columns=["fee"]), tmp / "nofee.parquet")


def _two_files(tmp: Path, frame: pd.DataFrame, second: pd.DataFrame) -> Path:
    folder = tmp / "dataset"
    half = len(frame) // 2
    write_parquet_atomic(frame.iloc[:half], folder / "a.parquet")
    write_parquet_atomic(second.iloc[half:], folder / "b.parquet")
    return folder


def _disagree_missing(tmp: Path, frame: pd.DataFrame) -> Path:
    return _two_files(tmp, frame, frame.drop(columns=["fee"]))


def _disagree_extra(tmp: Path, frame: pd.DataFrame) -> Path:
    return _two_files(tmp, frame, frame.assign(terminal_id="t-1"))


def _disagree_type(tmp: Path, frame: pd.DataFrame) -> Path:
    return _two_files(tmp, frame, frame.astype({"amount": "string"}))


#: Entries that stop every job (training and scoring) with exit code 2.
FILE_CASES: dict[str, FileCase] = {
    "path_does_not_exist": FileCase(_missing, ("{path}", "no such file", "Check the path")),
    "empty_directory": FileCase(_empty_directory, ("{path}", "holds no Parquet files")),
    "zero_rows": FileCase(_zero_rows, ("{path}", "has 0 rows", "point at data that has rows")),
    "truncated_parquet": FileCase(
        _truncated, ("{path}", "cannot be read as Parquet", "written completely")
    ),
    "corrupt_parquet": FileCase(_corrupt, ("{path}", "cannot be read as Parquet")),
    "not_parquet": FileCase(_not_parquet, ("{path}", "cannot be read as Parquet")),
    "schemas_disagree_missing_column": FileCase(
        _disagree_missing, ("{culprit}", "['fee']", "missing from this file"), "b.parquet"
    ),
    "schemas_disagree_extra_column": FileCase(
        _disagree_extra, ("{culprit}", "['terminal_id']", "same columns"), "b.parquet"
    ),
    "schemas_disagree_column_type": FileCase(
        _disagree_type,
        ("{culprit}", "column 'amount' holds text", "agree on column types"),
        "b.parquet",
    ),
}

#: Scoring only: the model needs a column the data lacks.
MISSING_FEATURE = FileCase(_missing_column, ("{path}", "['fee']", "required by the model"))


def expected_fragments(case: FileCase, path: Path) -> list[str]:
    culprit = str(path / case.culprit) if case.culprit else ""
    return [f.format(path=path, culprit=culprit) for f in case.fragments]


# -- row-level entries (scoring) -------------------------------------------------------------
#: Values a float column can hold that must still give a finite score, by row.
EXTREME_VALUES = {0: np.nan, 1: np.inf, 2: -np.inf, 3: 1e308, 4: -1e308}
UNSEEN_ROW, UNSEEN_LEVEL = 5, "carrier-pigeon"
DUPLICATE_ROWS = (6, 7)  # row 7 gets row 6's key
EXTRA_COLUMN = "operator_note"
TEXT_ROW, TEXT_VALUE = 8, "twelve"


def with_extreme_values(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for row, value in EXTREME_VALUES.items():
        out.loc[row, "amount"] = value
    return out


def with_unseen_category(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.loc[UNSEEN_ROW, "channel"] = UNSEEN_LEVEL
    return out


def with_all_null_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(distance_km=np.nan)


def with_duplicate_keys(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.loc[DUPLICATE_ROWS[1], KEY] = out.loc[DUPLICATE_ROWS[0], KEY]
    return out


def with_extra_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{EXTRA_COLUMN: "checked"})


def with_text_in_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.astype({"amount": "string"})
    out.loc[TEXT_ROW, "amount"] = TEXT_VALUE
    return out


def assert_finite_scores(scores: pd.DataFrame) -> None:
    for column in SCORE_COLUMNS:
        values = scores[column].to_numpy(dtype=float)
        assert np.isfinite(values).all(), (column, values[~np.isfinite(values)])
