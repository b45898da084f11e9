"""Scoring many files, or a large file in row-group partitions, concurrently.

Real Prefect flow, real MLflow store, real Parquet: every row of every file is accounted for
exactly once, and the outputs are the same whatever the concurrency or partitioning.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.config import Settings, load_settings
from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic, writer_tag
from flows.score_flow import MANIFEST_FILE, score_flow
from flows.train_flow import train_flow
from vae_core.io import read_table

pytestmark = pytest.mark.usefixtures("prefect_server")

N_FILES = 50
ROWS_PER_FILE = 24


def settings_for(store: str, train: Path, source: Path, out: Path, **score) -> Settings:
    return load_settings(
        files=[],
        environ={},
        overrides={
            "tracking": {"tracking_uri": store, "registered_model": "parallel"},
            "train": {
                "data_path": str(train),
                "key_columns": ["payment_id"],
                "timestamp_column": "created_at",
                "detector": {"max_epochs": 5, "random_state": 0},
            },
            "score": {
                "input_path": str(source),
                "output_dir": str(out),
                "model_uri": "models:/parallel@champion",
                "batch_size": 7,
                **score,
            },
        },
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mlflow_store_factory):
    """A champion, 50 small files (some rows with a null key) and the same rows as one file."""
    root = tmp_path_factory.mktemp("parallel")
    train, score, _ = make_demo_frames(seed=5, n_train=600, n_score=N_FILES * ROWS_PER_FILE)
    write_parquet_atomic(train, root / "train.parquet")
    score.loc[score.index % 37 == 3, "payment_id"] = None  # quarantined: key is null
    many = root / "many"
    for number in range(N_FILES):
        part = score.iloc[number * ROWS_PER_FILE : (number + 1) * ROWS_PER_FILE]
        write_parquet_atomic(part, many / f"batch-{number:03d}.parquet")
    single = root / "single.parquet"
    # small row groups, so the file can be split into partitions
    pq.write_table(pa.Table.from_pandas(score, preserve_index=False), single, row_group_size=100)
    store = mlflow_store_factory(root)
    train_flow(settings_for(store, root / "train.parquet", single, root / "unused"))
    return store, root, score


def run(setup, source: Path, out: Path, **score):
    store, root, _ = setup
    outcome = score_flow(settings_for(store, root / "train.parquet", source, out, **score))
    scores = read_table(outcome.scores_path)
    quarantine = read_table(outcome.quarantine_path) if outcome.quarantine_path else None
    return outcome, scores, quarantine


def test_fifty_files_scored_concurrently_account_for_every_row_once(setup, tmp_path) -> None:
    _, root, score = setup
    outcome, scores, quarantine = run(setup, root / "many", tmp_path / "out", concurrency=8)
    assert outcome.rows_in == len(score) == N_FILES * ROWS_PER_FILE
    expected_bad = int(score["payment_id"].isna().sum())
    assert outcome.rows_quarantined == len(quarantine) == expected_bad > 0
    assert outcome.rows_scored == len(scores) == len(score) - expected_bad
    # every good key exactly once, in input order; every bad row exactly once in quarantine
    good = score["payment_id"].dropna().tolist()
    assert scores["payment_id"].tolist() == good
    assert sorted(quarantine["created_at"]) == sorted(
        score.loc[score["payment_id"].isna(), "created_at"].astype("string")
    )
    manifest = json.loads((outcome.run_dir / MANIFEST_FILE).read_text())
    assert len(manifest["partitions"]) == N_FILES
    assert sum(p["rows_in"] for p in manifest["partitions"]) == len(score)
    assert manifest["rows"] == {
        "in": len(score),
        "scored": len(good),
        "quarantined": expected_bad,
        "flagged": outcome.n_flagged,
    }
    assert manifest["model"]["version"] == outcome.model_version
    assert not list((tmp_path / "out").rglob(".parts-*")), "staging must be cleaned up"
    # Row-group statistics where readers filter (keys, score, flag), none on the shares
    # and feature names, also in the file concatenated from the partitions' parts.
    chunks = pq.ParquetFile(outcome.scores_path).metadata.row_group(0)
    statistics = {
        chunks.column(i).path_in_schema: chunks.column(i).is_stats_set
        for i in range(chunks.num_columns)
    }
    assert statistics["payment_id"] and statistics["score"] and statistics["is_anomaly"]
    assert not statistics["top_feature_1"] and not statistics["top_feature_1_share"]
    assert not statistics["recon_error"] and not statistics["kl"]


def test_outputs_do_not_depend_on_concurrency_or_partitioning(setup, tmp_path) -> None:
    _, root, _ = setup
    parallel, many_parallel, q_parallel = run(setup, root / "many", tmp_path / "a", concurrency=8)
    _, many_serial, q_serial = run(setup, root / "many", tmp_path / "b", concurrency=1)
    _, whole, q_whole = run(setup, root / "single.parquet", tmp_path / "c")
    split_run, split, q_split = run(
        setup, root / "single.parquet", tmp_path / "d", partition_rows=250
    )
    manifest = json.loads((split_run.run_dir / MANIFEST_FILE).read_text())
    assert len(manifest["partitions"]) == 6  # groups of 100 rows, two per 250-row part
    # Exactly the same rows, keys, flags and top features. Scores agree to float32
    # rounding: the network's matrix kernels round differently for batches of different
    # sizes, and file boundaries change the batches.
    for frame in (many_serial, whole, split):
        pd.testing.assert_frame_equal(frame, many_parallel, check_exact=False, rtol=1e-4)
        for column in ("payment_id", "is_anomaly", "top_feature_1"):
            assert frame[column].tolist() == many_parallel[column].tolist()
    pd.testing.assert_frame_equal(many_serial, many_parallel)  # same batches: bit for bit
    for frame in (q_serial, q_whole, q_split):
        pd.testing.assert_frame_equal(frame, q_parallel)
    report_a = parallel.report_path.read_text()
    assert f"{len(many_parallel):,}" in report_a


def test_a_rerun_publishes_a_new_set_and_clears_a_killed_runs_staging(setup, tmp_path) -> None:
    _, root, _ = setup
    out = tmp_path / "out"
    first, scores_first, _ = run(setup, root / "many", out, concurrency=4)
    # What a run killed mid-way leaves behind (its staging folder, holding its partitions'
    # staging), and the staging of a run still writing.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    host = writer_tag().rpartition(".")[0]
    stale = out / "runs" / f".staging-{host}.{dead.stdout.strip()}.20200101T000000Z-dead00"
    (stale / ".parts-x.1.deadbeef0000").mkdir(parents=True)
    (stale / ".parts-x.1.deadbeef0000" / "part-00000.scores.parquet").write_bytes(b"half")
    live = out / "runs" / f".staging-{writer_tag()}.20200101T000000Z-a11ve0"
    live.mkdir()
    second, scores_second, _ = run(setup, root / "many", out, concurrency=4)
    assert not stale.exists() and live.exists()
    live.rmdir()
    pd.testing.assert_frame_equal(scores_first, scores_second)
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        [first.run_dir.name, second.run_dir.name]
    )
    assert sorted(p.name for p in second.run_dir.iterdir()) == [
        "flagged.parquet",
        "manifest.json",
        "quarantine.parquet",
        "report.html",
        "scores.parquet",
    ]
    assert np.isclose(first.n_flagged, second.n_flagged)
