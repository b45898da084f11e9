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
import pyarrow as pa
import pyarrow.parquet as pq

from flows.pipeline.writers import write_parquet_atomic
from vae_core.io import frame_to_table

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


# -- second round: inputs the first catalogue did not list ---------------------------------
TEXT_SPELLINGS = ("nan", "NaN", "inf", "-inf", "Infinity", "")
#: Rows of the score frame that get one text spelling each (TEXT_ROW and on).
SPELLING_ROWS = tuple(range(TEXT_ROW, TEXT_ROW + len(TEXT_SPELLINGS)))
GARBAGE_ROWS, GARBAGE_TIME = (2, 3), "not a time"
NULL_KEY_ROWS = (4, 5)
N_EXTRA_COLUMNS = 10_000
#: Each entry: (column, how the type changes, the type named in training, the type now).
DRIFT_CASES = {
    "timestamps_in_a_numeric_column": ("amount", "numbers (float64)", "timestamps ("),
    "integers_in_a_boolean_column": ("card_present", "booleans (bool)", "numbers (int64)"),
    "integers_in_a_categorical_column": ("channel", "text (", "numbers (int64)"),
}


def with_type_drift(frame: pd.DataFrame, entry: str) -> pd.DataFrame:
    column = DRIFT_CASES[entry][0]
    values = {
        "amount": frame["created_at"],
        "card_present": frame["card_present"].astype("int64"),
        "channel": pd.Series(np.arange(len(frame)) % 3, index=frame.index, dtype="int64"),
    }[column]
    return frame.assign(**{column: values})


def with_text_spellings(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.astype({"amount": "string"})
    for row, spelling in zip(SPELLING_ROWS, TEXT_SPELLINGS, strict=True):
        out.loc[row, "amount"] = spelling
    return out


def with_garbage_timestamps(frame: pd.DataFrame, column: str = "created_at") -> pd.DataFrame:
    out = frame.copy()
    out[column] = out[column].map(lambda t: t.isoformat()).astype("string")
    for row in GARBAGE_ROWS:
        out.loc[row, column] = GARBAGE_TIME
    return out


def with_null_keys(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.loc[list(NULL_KEY_ROWS), KEY] = None
    return out


def with_many_extra_columns(frame: pd.DataFrame) -> pd.DataFrame:
    extra = pd.DataFrame(
        np.zeros((len(frame), N_EXTRA_COLUMNS), dtype="int8"),
        columns=[f"unused_{i:05d}" for i in range(N_EXTRA_COLUMNS)],
        index=frame.index,
    )
    return pd.concat([frame, extra], axis=1)


#: Nested key values as Arrow writes them: (Arrow array builder, the word the error uses).
NESTED_KEYS = {
    "struct": (lambda n: pa.array([{"id": i} for i in range(n)]), "struct"),
    "list": (lambda n: pa.array([[i] for i in range(n)]), "list or map"),
    "map": (
        lambda n: pa.array([[("id", i)] for i in range(n)], pa.map_(pa.string(), pa.int64())),
        "list or map",
    ),
}


def write_nested_key(frame: pd.DataFrame, kind: str, path: Path) -> Path:
    """``frame`` with its key column replaced by nested values, as a Parquet file."""
    table = frame_to_table(frame.reset_index(drop=True)).replace_schema_metadata(None)
    column = NESTED_KEYS[kind][0](len(frame))
    table = table.set_column(table.schema.get_field_index(KEY), KEY, column)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def billion_laughs(levels: int = 9) -> str:
    """A YAML document of nested aliases under an unknown key: 9**9 strings expanded."""
    lines = ['  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "score:\n  laughs:\n" + "\n".join("  " + line for line in lines) + "\n"


# -- sensor series ---------------------------------------------------------------------------
SENSOR_TIME = "ts"
SENSOR_WINDOW = 5


def sensor_series(n_rows: int, start: str = "2024-01-01") -> pd.DataFrame:
    """One series of two channels, one row a second."""
    rng = np.random.default_rng(0)
    steps = np.arange(n_rows)
    return pd.DataFrame(
        {
            SENSOR_TIME: pd.date_range(start, periods=n_rows, freq="s"),
            "pressure": np.sin(steps / 5) + 0.05 * rng.normal(size=n_rows),
            "flow": np.cos(steps / 5) + 0.05 * rng.normal(size=n_rows),
        }
    )
