"""Nothing lost: a scoring process killed with SIGKILL mid-write, then rerun; idempotent reruns.

A real ``vae-anomaly`` subprocess scores a large input in small batches. As soon as its
temporary output file beside the target has data in it, the process is killed. What a
reader can then find at the target is either nothing or the previous complete output,
never a partial file. The rerun removes the dead process's temporary file and writes
output identical, byte for byte, to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from reliability_helpers import Champion, flow_settings, run_cli, temporary_files, write_config

from flows.pipeline.writers import write_parquet_atomic
from flows.score_flow import score_flow

pytestmark = pytest.mark.usefixtures("prefect_server")

REPO = Path(__file__).resolve().parents[3]
BATCH = "500"
#: Rows of the large input: enough batches that the kill lands mid-write.
BIG_ROWS = 60_000


def tiled(frame: pd.DataFrame, n_rows: int) -> pd.DataFrame:
    """``frame`` repeated to ``n_rows`` rows, each with its own key."""
    copies = -(-n_rows // len(frame))
    big = pd.concat([frame] * copies, ignore_index=True).head(n_rows)
    big["payment_id"] = [f"P{i:09d}" for i in range(n_rows)]
    return big


@pytest.fixture(scope="module")
def big_input(tmp_path_factory: pytest.TempPathFactory, frames) -> Path:
    root = tmp_path_factory.mktemp("big")
    return write_parquet_atomic(tiled(frames[1], BIG_ROWS), root / "big.parquet")


def start(argv: list[str | Path], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--threads", "1", *map(str, argv)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def kill_once_writing(process: subprocess.Popen, target: Path, min_bytes: int = 32_768) -> Path:
    """SIGKILL ``process`` once a temporary file of ``target`` holds ``min_bytes``."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(
                f"the process ended (code {process.returncode}) before it could be "
                f"killed mid-write; give it more rows.\n{err.decode()[-2000:]}"
            )
        for path in target.parent.glob(f".{target.name}.*.tmp"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size >= min_bytes:
                process.send_signal(signal.SIGKILL)
                process.communicate()  # reap it: a zombie would still look alive
                assert process.returncode == -signal.SIGKILL
                return path
        time.sleep(0.005)
    process.kill()
    pytest.fail("no temporary output appeared within 240 s")


def test_score_file_killed_mid_write_leaves_no_output_and_reruns_identically(
    capfd, tmp_path: Path, big_input: Path, model_dir: Path
) -> None:
    reference = tmp_path / "reference" / "scores.parquet"
    argv = [
        "score-file",
        big_input,
        "--model-dir",
        model_dir,
        "--batch-size",
        BATCH,
        "--top",
        "0",
        "--output",
    ]
    assert run_cli(capfd, *argv, reference)[0] == 0

    target = tmp_path / "out" / "scores.parquet"
    leftover = kill_once_writing(start([*argv, target]), target)
    assert not target.exists()  # no output at all, rather than a partial one
    assert leftover.exists() and leftover.name.startswith(f".{target.name}.")

    code, _, err = run_cli(capfd, *argv, target)
    assert code == 0, err
    assert target.read_bytes() == reference.read_bytes()
    assert temporary_files(target.parent) == []  # the dead run's file was cleaned up
    assert sorted(p.name for p in target.parent.iterdir()) == ["scores.parquet"]


def test_score_command_killed_mid_write_keeps_the_previous_output(
    tmp_path: Path, frames, big_input: Path, champion: Champion
) -> None:
    """Yesterday's complete output survives a killed run; the rerun equals a clean run."""
    from prefect.settings import PREFECT_API_URL

    out = tmp_path / "out"
    yesterday = flow_settings(champion.store, champion.train, champion.score, out)
    score_flow(yesterday)
    previous = {name: (out / name).read_bytes() for name in ("scores.parquet", "report.html")}

    today = flow_settings(
        champion.store, champion.train, big_input, out, score={"batch_size": int(BATCH)}
    )
    clean = score_flow(
        today.model_copy(
            update={"score": today.score.model_copy(update={"output_dir": str(tmp_path / "clean")})}
        )
    )

    config = write_config(tmp_path / "score.yaml", today)
    process = start(["score", "--config", config], env={"PREFECT_API_URL": PREFECT_API_URL.value()})
    leftover = kill_once_writing(process, out / "scores.parquet")
    for name, content in previous.items():
        assert (out / name).read_bytes() == content, name
    assert leftover.exists()

    rerun = score_flow(today)
    assert temporary_files(out) == []
    assert rerun.rows_in == rerun.rows_scored == BIG_ROWS
    assert rerun.scores_path.read_bytes() == clean.scores_path.read_bytes()


# -- idempotent reruns -----------------------------------------------------------------------
def test_score_file_twice_gives_the_same_file(capfd, tmp_path: Path, good_files, model_dir):
    output = tmp_path / "scores.parquet"
    argv = ["score-file", good_files["score"], "--model-dir", model_dir, "--output", output]
    assert run_cli(capfd, *argv)[0] == 0
    first = output.read_bytes()
    assert run_cli(capfd, *argv)[0] == 0
    assert output.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]


@pytest.mark.parametrize("how", ["flow", "command"])
def test_scoring_run_twice_gives_the_same_files(
    capfd, tmp_path: Path, frames, champion: Champion, how: str
) -> None:
    """Same input, same model version: the same files with the same content, no copies.

    The report and the manifest differ only in when they were made and the MLflow run id."""
    dirty = frames[1].astype({"amount": "string"})
    dirty.loc[4, "amount"] = "n/a"  # so that a quarantine file is written too
    data = write_parquet_atomic(dirty, tmp_path / "input.parquet")
    out = tmp_path / "out"
    settings = flow_settings(champion.store, champion.train, data, out)
    config = write_config(tmp_path / "score.yaml", settings)
    snapshots = []
    for _ in range(2):
        if how == "flow":
            score_flow(settings)
        else:
            assert run_cli(capfd, "score", "--config", config)[0] == 0
        snapshots.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    first, second = snapshots
    assert (
        sorted(first)
        == sorted(second)
        == ["manifest.json", "quarantine.parquet", "report.html", "scores.parquet"]
    )
    for name in ("scores.parquet", "quarantine.parquet"):
        assert first[name] == second[name], name
    manifests = [json.loads(s["manifest.json"]) for s in snapshots]
    for manifest in manifests:
        manifest.pop("mlflow_run_id")
    assert manifests[0] == manifests[1]
    assert first["report.html"] != b"" and len(first["report.html"]) == pytest.approx(
        len(second["report.html"]), abs=64
    )


# -- row accounting --------------------------------------------------------------------------
def test_accounting_check_counts_every_row() -> None:
    from flows.pipeline.summary import PartitionResult, RowAccountingError

    PartitionResult(rows_in=10, rows_scored=8, rows_quarantined=2).check_accounting()
    with pytest.raises(
        RowAccountingError, match="rows read 10 != rows scored 8 \\+ rows quarantined 1"
    ):
        PartitionResult(rows_in=10, rows_scored=8, rows_quarantined=1).check_accounting()


def test_a_run_that_loses_a_row_fails_and_writes_nothing(
    tmp_path: Path, champion: Champion, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inject the bug the check exists for: validation silently dropping a row."""
    from flows.pipeline import stream as module
    from flows.pipeline.summary import RowAccountingError

    real_split = module.split_valid_rows

    def lossy_split(batch, *args, **kwargs):
        valid, quarantined = real_split(batch, *args, **kwargs)
        return valid.iloc[1:], quarantined

    monkeypatch.setattr(module, "split_valid_rows", lossy_split)
    out = tmp_path / "out"
    with pytest.raises(RowAccountingError):
        score_flow(flow_settings(champion.store, champion.train, champion.score, out))
    assert sorted(p.name for p in out.iterdir()) == []  # neither scores nor report
    client = MlflowClient(champion.store, champion.store)
    experiment = client.get_experiment_by_name("rel")
    (run,) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    assert run.info.status == "FAILED"
