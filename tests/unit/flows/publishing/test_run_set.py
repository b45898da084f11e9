"""Run folders published as sets: staging, manifest, latest pointer, lock, retention, index."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest

from flows.publishing import retention, run_index, run_set
from flows.publishing.run_set import (
    RunSetError,
    begin_run,
    discard_run,
    latest_run_dir,
    publish_run,
    read_latest,
    root_lock,
    verify_run,
    write_manifest,
)
from vae_core.errors import OutputPathError


def row(run_id: str, day: date, **values) -> dict:
    base = {
        "run_date": day,
        "run_id": run_id,
        "finished_at": datetime(2026, 1, 1, tzinfo=UTC),
        "model_name": "m",
        "model_version": "1",
        "rows_in": 10,
        "rows_scored": 9,
        "rows_quarantined": 1,
        "rows_flagged": 2,
        "alert_rate": 2 / 9,
        "score_p50": 1.0,
        "score_p90": 2.0,
        "score_p99": 3.0,
        "threshold": 2.5,
    }
    return {**base, **values}


def publish(root: Path, run_id: str, day: date, keep_runs: int = 30, **files: bytes):
    staging = begin_run(root, run_id)
    for name, content in (files or {"scores.parquet": run_id.encode()}).items():
        (staging / name).write_bytes(content)
    finished = datetime.now(UTC).isoformat()
    write_manifest(
        staging, {"run_id": run_id, "run_date": day.isoformat(), "finished_at": finished}
    )
    return publish_run(root, staging, run_id, day, row(run_id, day), keep_runs)


def visible(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "runs").iterdir())


def test_a_published_run_is_complete_named_by_latest_and_indexed(tmp_path: Path) -> None:
    published = publish(tmp_path, "R1", date(2026, 1, 1), **{"a.txt": b"a", "b.bin": b"bb"})
    assert published.run_dir == tmp_path / "runs" / "R1" and published.is_latest
    assert json.loads((tmp_path / "latest.json").read_text()) == {
        "run_id": "R1",
        "run_date": "2026-01-01",
        "path": "runs/R1",
    }
    manifest = verify_run(published.run_dir)
    assert manifest["files"]["b.bin"]["size"] == 2
    assert sorted(manifest["files"]) == ["a.txt", "b.bin"]
    assert latest_run_dir(tmp_path) == published.run_dir
    index = run_index.read_index(tmp_path)
    assert list(index.columns) == list(run_index.COLUMNS)
    assert index["run_id"].tolist() == ["R1"] and index["rows_flagged"].tolist() == [2]
    assert visible(tmp_path) == ["R1"]


def test_three_runs_give_three_folders_latest_on_the_third(tmp_path: Path) -> None:
    for n in (1, 2, 3):
        publish(tmp_path, f"R{n}", date(2026, 1, n))
    assert visible(tmp_path) == ["R1", "R2", "R3"]
    assert read_latest(tmp_path).run_id == "R3"
    index = run_index.read_index(tmp_path)
    assert index["run_id"].tolist() == ["R1", "R2", "R3"]
    assert index["run_date"].tolist() == [date(2026, 1, n) for n in (1, 2, 3)]


def test_a_backfill_of_an_older_date_does_not_take_latest(tmp_path: Path) -> None:
    publish(tmp_path, "NEW", date(2026, 1, 5))
    backfill = publish(tmp_path, "OLD", date(2026, 1, 1))
    assert not backfill.is_latest and read_latest(tmp_path).run_id == "NEW"
    rerun = publish(tmp_path, "SAME", date(2026, 1, 5))  # the same date again: the rerun wins
    assert rerun.is_latest and read_latest(tmp_path).run_id == "SAME"


def test_latest_naming_a_removed_folder_is_replaced(tmp_path: Path) -> None:
    publish(tmp_path, "NEW", date(2026, 1, 5))
    retention.remove_tree(tmp_path / "runs" / "NEW")
    assert publish(tmp_path, "OLD", date(2026, 1, 1)).is_latest


def test_retention_keeps_the_newest_and_never_latest(tmp_path: Path) -> None:
    for n in (1, 2, 3, 4):
        published = publish(tmp_path, f"R{n}", date(2026, 1, n), keep_runs=2)
    assert visible(tmp_path) == ["R3", "R4"] and published.removed == (tmp_path / "runs" / "R2",)
    # A backfill is the oldest run: retention removes it at once, latest stays on R4.
    backfill = publish(tmp_path, "B", date(2025, 12, 1), keep_runs=2)
    assert visible(tmp_path) == ["R3", "R4"] and read_latest(tmp_path).run_id == "R4"
    assert backfill.run_dir in backfill.removed
    # latest is kept even when it is not among the newest keep_runs (a pointer set by hand).
    publish(tmp_path, "R5", date(2026, 1, 9), keep_runs=1)
    assert visible(tmp_path) == ["R5"]
    (tmp_path / "latest.json").write_text(
        json.dumps({"run_id": "R5", "run_date": "2026-01-10", "path": "runs/R5"})
    )
    publish(tmp_path, "R6", date(2026, 1, 9), keep_runs=1)
    assert visible(tmp_path) == ["R5", "R6"] and read_latest(tmp_path).run_id == "R5"
    assert len(run_index.read_index(tmp_path)) == 7  # the index keeps every run's row


def test_folders_that_are_not_runs_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / "runs" / "notes").mkdir(parents=True)
    for n in (1, 2):
        publish(tmp_path, f"R{n}", date(2026, 1, n), keep_runs=1)
    assert visible(tmp_path) == ["R2", "notes"]


def test_a_failed_run_publishes_nothing(tmp_path: Path) -> None:
    publish(tmp_path, "R1", date(2026, 1, 1))
    staging = begin_run(tmp_path, "R2")
    (staging / "scores.parquet").write_bytes(b"new")
    discard_run(staging)
    assert visible(tmp_path) == ["R1"] and read_latest(tmp_path).run_id == "R1"
    with pytest.raises(RunSetError, match="no manifest.json"):
        publish_run(tmp_path, begin_run(tmp_path, "R3"), "R3", date(2026, 1, 3), {}, 30)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "a.txt").write_bytes(b"A"), "a.txt differs from the manifest"),
        (lambda d: (d / "a.txt").unlink(), "a.txt is missing"),
        (lambda d: (d / "extra").write_bytes(b""), "extra is not in the manifest"),
        (lambda d: (d / "manifest.json").write_text("{"), "no readable manifest.json"),
    ],
)
def test_verify_names_what_differs(tmp_path: Path, damage, message: str) -> None:
    run_dir = publish(tmp_path, "R1", date(2026, 1, 1), **{"a.txt": b"a"}).run_dir
    damage(run_dir)
    with pytest.raises(RunSetError, match=message):
        verify_run(run_dir)


def test_an_output_root_that_is_not_a_folder_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match=f"{tmp_path / 'file'} is a file; the scoring"):
        begin_run(tmp_path / "file", "R1")
    with pytest.raises(OutputPathError, match="file/below: .*file is a file, not a directory"):
        begin_run(tmp_path / "file" / "below", "R1")
    with pytest.raises(OutputPathError, match="/dev/null is a character device"):
        begin_run("/dev/null", "R1")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only folders")
def test_a_read_only_output_root_is_refused_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match=f"{root}: cannot write here"):
            begin_run(root, "R1")
    finally:
        root.chmod(0o700)


def test_unreadable_latest_reads_as_none(tmp_path: Path) -> None:
    assert read_latest(tmp_path) is None and latest_run_dir(tmp_path) is None
    (tmp_path / "latest.json").write_text("not json")
    assert read_latest(tmp_path) is None


def test_staging_folders_of_dead_runs_are_removed_live_ones_kept(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tag = run_set.writer_tag().rpartition(".")[0]
    dead_folder = runs / f".staging-{tag}.{dead.pid}.R0"
    half_removed = runs / f".removing-{tag}.{dead.pid}.R9"
    other_host = runs / ".staging-elsewhere.1.R8"
    for folder in (dead_folder, half_removed, other_host):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "scores.parquet").write_bytes(b"x")
    live = begin_run(tmp_path, "R1")
    assert live.name == f".staging-{run_set.writer_tag()}.R1"
    assert not dead_folder.exists() and not half_removed.exists()
    assert other_host.exists()  # another machine's run: only removed once it is stale
    begin_run(tmp_path, "R2")
    assert live.exists()  # this process is alive
    old = time.time() - retention.STALE_TEMPORARY_S - 60
    for path in [other_host, *other_host.rglob("*")]:
        os.utime(path, (old, old))
    assert retention.remove_abandoned(runs) == [other_host]


def _hold_lock(root: str, ready, release) -> None:
    with root_lock(root):
        ready.set()
        release.wait(30)


def test_the_lock_serialises_publishers_and_dies_with_its_holder(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(60)
    with pytest.raises(TimeoutError, match=r"\.run-set\.lock: another run has held"):
        with root_lock(tmp_path, timeout_s=0.3):
            pass
    os.kill(holder.pid, signal.SIGKILL)  # a killed holder: the kernel releases the lock
    holder.join(30)
    with root_lock(tmp_path, timeout_s=5):
        pass


def test_index_rows_must_have_every_column(tmp_path: Path) -> None:
    with pytest.raises(run_index.RunIndexError, match=r"missing \['threshold'\]"):
        run_index.append_row(
            tmp_path, {k: v for k, v in row("R", date.today()).items() if k != "threshold"}
        )
    with pytest.raises(run_index.RunIndexError, match=r"unknown \['extra'\]"):
        run_index.append_row(tmp_path, {**row("R", date.today()), "extra": 1})


def test_an_empty_index_has_the_columns(tmp_path: Path) -> None:
    empty = run_index.read_index(tmp_path)
    assert list(empty.columns) == list(run_index.COLUMNS) and empty.empty


def test_an_unreadable_index_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "run_index.parquet").write_bytes(b"garbage")
    with pytest.raises(run_index.RunIndexError, match="run_index.parquet: the run index cannot"):
        run_index.read_index(tmp_path)


def test_index_types(tmp_path: Path) -> None:
    run_index.append_row(tmp_path, row("R1", date(2026, 2, 3)))
    run_index.append_row(tmp_path, row("R2", "2026-02-04", rows_in=11))
    index = run_index.read_index(tmp_path)
    assert index["finished_at"].dt.tz is not None
    assert index["rows_in"].tolist() == [10, 11] and index["rows_in"].dtype == "int64"
    assert index["run_date"].tolist() == [date(2026, 2, 3), date(2026, 2, 4)]
    assert isinstance(index, pd.DataFrame)
