"""The pipeline's input checks on a real model and real Parquet: type drift refused when
asked, nested keys refused, and nothing written either way."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.pipeline.stream import StreamOptions, StreamOutputs, run_stream
from vae_core import VAEAnomalyDetector
from vae_core.errors import ColumnTypeError
from vae_core.io import iter_batches


@pytest.fixture(scope="module")
def detector() -> VAEAnomalyDetector:
    frame = pd.DataFrame(
        {
            "id": range(200),
            "x": [float(i % 7) for i in range(200)],
            "flag": [i % 2 == 0 for i in range(200)],
        }
    )
    params = {"max_epochs": 2, "hidden_sizes": (8,), "latent_dim": 2, "random_state": 0}
    return VAEAnomalyDetector(key_columns=("id",), **params).fit(frame)


def score(detector, path: Path, tmp_path: Path, **options):
    outputs = StreamOutputs(tmp_path / "scores.parquet", tmp_path / "quarantine.parquet")
    return run_stream(
        detector, iter_batches(path, batch_size=16), str(path), outputs, StreamOptions(**options)
    )


def drifted(tmp_path: Path) -> Path:
    path = tmp_path / "in.parquet"
    frame = pd.DataFrame({"id": range(40), "x": 1.0, "flag": [i % 2 for i in range(40)]})
    frame.to_parquet(path)
    return path


def test_type_drift_warns_by_default(detector, tmp_path: Path) -> None:
    result = score(detector, drifted(tmp_path), tmp_path)
    (note,) = result.notes.messages()
    assert "column 'flag' holds numbers (int64) but held booleans (bool) in training" in note
    assert (tmp_path / "scores.parquet").exists() and result.rows_scored == 40


def test_type_drift_refused_writes_nothing(detector, tmp_path: Path) -> None:
    with pytest.raises(ColumnTypeError, match=r"in\.parquet: column 'flag' holds numbers"):
        score(detector, drifted(tmp_path), tmp_path, type_drift="refuse")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]


def test_a_nested_key_stops_the_stream_naming_it(detector, tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    ids = pa.array([{"part": i} for i in range(40)])
    pq.write_table(pa.table({"id": ids, "x": [1.0] * 40, "flag": [True] * 40}), path)
    for numeric_errors in ("quarantine", None):
        with pytest.raises(ColumnTypeError, match="key column 'id' holds struct values"):
            score(detector, path, tmp_path, numeric_errors=numeric_errors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
