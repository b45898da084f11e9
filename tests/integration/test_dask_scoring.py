"""The scoring flow on a real Dask cluster: worker processes on this machine.

The outputs equal single-process scoring, each worker loads the model once, and a worker
killed in the middle of a partition costs a retry on another worker, not a row.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from prefect import flow

from flows.config import Settings, load_settings
from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic
from flows.score_flow import MANIFEST_FILE, score_flow
from flows.train_flow import train_flow
from vae_core.io import read_table

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.usefixtures("prefect_server")

N_FILES = 6
ROWS_PER_FILE = 400


def settings_for(store: str, root: Path, out: Path, **score) -> Settings:
    return load_settings(
        files=[],
        environ={},
        overrides={
            "tracking": {"tracking_uri": store, "registered_model": "dask"},
            "train": {
                "data_path": str(root / "train.parquet"),
                "key_columns": ["payment_id"],
                "timestamp_column": "created_at",
                "detector": {"max_epochs": 3, "random_state": 0},
            },
            "score": {
                "input_path": str(root / "many"),
                "output_dir": str(out),
                "model_uri": "models:/dask@champion",
                "batch_size": 50,
                **score,
            },
        },
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mlflow_store_factory):
    root = tmp_path_factory.mktemp("dask")
    train, score, _ = make_demo_frames(seed=8, n_train=600, n_score=N_FILES * ROWS_PER_FILE)
    write_parquet_atomic(train, root / "train.parquet")
    score.loc[score.index % 53 == 5, "payment_id"] = None  # a few quarantined rows
    for number in range(N_FILES):
        write_parquet_atomic(
            score.iloc[number * ROWS_PER_FILE : (number + 1) * ROWS_PER_FILE],
            root / "many" / f"part-{number}.parquet",
        )
    store = mlflow_store_factory(root)
    train_flow(settings_for(store, root, root / "unused"))
    reference = score_flow(settings_for(store, root, root / "reference", concurrency=1))
    return store, root, reference


def local_cluster(n_workers: int):
    """Worker processes that report to the session's Prefect server, as deployed ones do."""
    from prefect.settings import PREFECT_API_URL

    return distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        env={"PREFECT_API_URL": str(PREFECT_API_URL.value())},
    )


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(3) as local:
        yield local


def outputs(outcome) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_table(outcome.scores_path), read_table(outcome.quarantine_path)


def assert_same_outputs(outcome, reference) -> None:
    scores, quarantine = outputs(outcome)
    expected_scores, expected_quarantine = outputs(reference)
    # Same partitions, same batches: the same bytes of every value.
    pd.testing.assert_frame_equal(scores, expected_scores)
    pd.testing.assert_frame_equal(quarantine, expected_quarantine)
    assert (outcome.rows_in, outcome.rows_scored, outcome.rows_quarantined, outcome.n_flagged) == (
        reference.rows_in,
        reference.rows_scored,
        reference.rows_quarantined,
        reference.n_flagged,
    )


def test_scoring_on_an_existing_cluster_equals_single_process(setup, cluster, tmp_path) -> None:
    store, root, reference = setup
    outcome = score_flow(
        settings_for(
            store,
            root,
            tmp_path / "out",
            task_runner="dask",
            dask_address=cluster.scheduler_address,
        )
    )
    assert_same_outputs(outcome, reference)
    manifest = json.loads((outcome.run_dir / MANIFEST_FILE).read_text())
    assert [p["index"] for p in manifest["partitions"]] == list(range(N_FILES))
    # every worker process that scored loaded the model once, and only once
    with distributed.Client(cluster.scheduler_address) as client:
        loads = client.run(_model_loads)
    assert sum(loads.values()) <= len(loads) and sum(loads.values()) >= 1


def _model_loads() -> int:
    from flows.task_runners import worker_detector

    return worker_detector.cache_info().misses


def test_an_existing_cluster_needs_a_prefect_api_its_workers_can_reach(
    setup, cluster, tmp_path
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.task_runners import TaskRunnerError, make_task_runner

    @flow
    def pick_runner() -> None:
        make_task_runner("dask", 2, cluster.scheduler_address)

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(TaskRunnerError, match="Set PREFECT_API_URL"):
            pick_runner()


def test_a_local_cluster_is_started_when_no_address_is_given(setup, tmp_path) -> None:
    store, root, reference = setup
    outcome = score_flow(
        settings_for(store, root, tmp_path / "out", task_runner="dask", concurrency=2)
    )
    assert_same_outputs(outcome, reference)


def test_a_worker_killed_mid_partition_costs_a_retry_not_a_row(setup, tmp_path) -> None:
    store, root, reference = setup
    out = tmp_path / "out"
    with local_cluster(2) as local, distributed.Client(local) as client:
        killed: list[int] = []

        def kill_a_busy_worker() -> None:
            # Wait until a worker is writing a partition's part, then SIGKILL its process.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                if any(out.glob("runs/.staging-*/.parts-*/.*.tmp")):  # the run's staging
                    busy = [w for w, tasks in client.processing().items() if tasks]
                    if busy:
                        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                time.sleep(0.01)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        outcome = score_flow(
            settings_for(
                store,
                root,
                out,
                task_runner="dask",
                dask_address=local.scheduler_address,
                batch_size=10,
            )
        )
        killer.join()
    assert killed, "no worker was caught mid-partition"
    scores, _ = outputs(outcome)
    assert scores["payment_id"].is_unique
    assert_same_outputs_except_batching(outcome, reference)


def assert_same_outputs_except_batching(outcome, reference) -> None:
    """Batch size 10 instead of 50: scores agree to float32 rounding, the rest exactly."""
    scores, quarantine = outputs(outcome)
    expected_scores, expected_quarantine = outputs(reference)
    pd.testing.assert_frame_equal(scores, expected_scores, check_exact=False, rtol=1e-4)
    assert scores["payment_id"].tolist() == expected_scores["payment_id"].tolist()
    pd.testing.assert_frame_equal(quarantine, expected_quarantine)
    assert outcome.rows_in == reference.rows_in
