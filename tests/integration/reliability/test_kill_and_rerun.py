"""Nothing lost: scoring processes killed with SIGKILL at every step, then rerun.

``score-file``: a real ``vae-anomaly`` subprocess scores a large input in small batches
and is killed as soon as its temporary output file has data in it. A reader then finds
nothing at the target, never a partial file; the rerun removes the dead process's
temporary file and writes output identical, byte for byte, to an uninterrupted run.

``score`` (a run set): a real subprocess is killed with SIGKILL just before and just after
each rename it makes under the output root (each output file, the manifest, the run
folder, the run index, ``latest.json``, the removal of an old run), and in the middle of
writing its scores. Whatever the point, ``latest.json`` names a complete set whose files
match its manifest, every visible run folder is complete, and the next run cleans up and
publishes normally.
"""

from __future__ import annotations

import json
import os
import shutil
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
from flows.publishing import run_index
from flows.publishing.run_set import latest_run_dir, read_latest, verify_run
from flows.score_flow import score_flow

pytestmark = pytest.mark.usefixtures("prefect_server")

REPO = Path(__file__).resolve().parents[3]
BATCH = "500"
#: Rows of the large input: enough batches that the kill lands mid-write.
BIG_ROWS = 60_000

#: Runs the command line with ``os.replace``/``os.rename`` watched: renames into
#: ``$KILL_ROOT`` are numbered (and logged to ``$KILL_LOG``); the process SIGKILLs itself
#: just before or just after the one ``$KILL_AT`` names (``before:3``, ``after:3``).
KILLER = """
import os, signal, sys
root = os.path.realpath(os.environ["KILL_ROOT"])
point, log = os.environ.get("KILL_AT", ""), os.environ.get("KILL_LOG")
count = [0]

def watched(real):
    def rename(src, dst, *args, **kwargs):
        target = os.path.realpath(os.fspath(dst))
        if not target.startswith(root + os.sep):
            return real(src, dst, *args, **kwargs)
        count[0] += 1
        number = count[0]
        if log:
            with open(log, "a") as handle:
                print(number, os.path.relpath(os.fspath(src), root),
                      os.path.relpath(target, root), file=handle)
        if point == f"before:{number}":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(src, dst, *args, **kwargs)
        if point == f"after:{number}":
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return rename

os.replace, os.rename = watched(os.replace), watched(os.rename)
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""

#: Points of a run's renames under its output root (keep_runs=1, one earlier run): the
#: first and last of its files in the staging folder, then the manifest, the run folder,
#: the run index, latest.json and the earlier run's folder on its way out.
STEPS = (
    "first file",
    "last file",
    "manifest.json",
    "run folder",
    "run_index.parquet",
    "latest.json",
    "removal",
)


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


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def start(argv: list[str | Path], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "--threads", "1", *map(str, argv)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(env),
    )


def prefect_env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    return {"PREFECT_API_URL": str(PREFECT_API_URL.value())}


def kill_once_writing(process: subprocess.Popen, folder: Path, name: str) -> Path:
    """SIGKILL ``process`` once a temporary file of ``name`` anywhere under ``folder`` holds
    32 KiB."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(
                f"the process ended (code {process.returncode}) before it could be "
                f"killed mid-write; give it more rows.\n{err.decode()[-2000:]}"
            )
        for path in folder.rglob(f".{name}.*.tmp"):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size >= 32_768:
                process.send_signal(signal.SIGKILL)
                process.communicate()  # reap it: a zombie would still look alive
                assert process.returncode == -signal.SIGKILL
                return path
        time.sleep(0.005)
    process.kill()
    pytest.fail("no temporary output appeared within 240 s")


def assert_consistent(root: Path) -> str:
    """``latest`` names a complete set matching its manifest, and so does every visible run
    folder; return latest's run id."""
    latest = read_latest(root)
    assert latest is not None, "latest.json must name a run"
    assert latest_run_dir(root) == root / "runs" / latest.run_id
    for folder in (root / "runs").iterdir():
        if not folder.name.startswith("."):
            verify_run(folder)  # raises, naming the file, when a set is not complete
    return latest.run_id


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
    leftover = kill_once_writing(start([*argv, target]), target.parent, target.name)
    assert not target.exists()  # no output at all, rather than a partial one
    assert leftover.exists() and leftover.name.startswith(f".{target.name}.")

    code, _, err = run_cli(capfd, *argv, target)
    assert code == 0, err
    assert target.read_bytes() == reference.read_bytes()
    assert temporary_files(target.parent) == []  # the dead run's file was cleaned up
    assert sorted(p.name for p in target.parent.iterdir()) == ["scores.parquet"]


def test_score_command_killed_mid_write_keeps_the_previous_set(
    tmp_path: Path, frames, big_input: Path, champion: Champion
) -> None:
    """Yesterday's complete set stays latest when today's run dies writing its scores; the
    rerun cleans up and equals a clean run."""
    out = tmp_path / "out"
    yesterday = score_flow(
        flow_settings(
            champion.store, champion.train, champion.score, out, score={"run_date": "2026-01-01"}
        )
    )
    today = flow_settings(
        champion.store,
        champion.train,
        big_input,
        out,
        score={"batch_size": int(BATCH), "run_date": "2026-01-02"},
    )
    clean = score_flow(
        today.model_copy(
            update={"score": today.score.model_copy(update={"output_dir": str(tmp_path / "clean")})}
        )
    )

    config = write_config(tmp_path / "score.yaml", today)
    process = start(["score", "--config", config], env=prefect_env())
    leftover = kill_once_writing(process, out / "runs", "scores.parquet")
    assert leftover.exists() and leftover.parent.name.startswith(".staging-")
    assert assert_consistent(out) == yesterday.run_dir.name
    assert [p.name for p in (out / "runs").iterdir() if not p.name.startswith(".")] == [
        yesterday.run_dir.name
    ]

    rerun = score_flow(today)
    assert temporary_files(out) == []
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(
        [yesterday.run_dir.name, rerun.run_dir.name]
    )
    assert assert_consistent(out) == rerun.run_dir.name
    assert rerun.rows_in == rerun.rows_scored == BIG_ROWS
    assert rerun.scores_path.read_bytes() == clean.scores_path.read_bytes()


# -- kill -9 before and after every rename of a run set ------------------------------------
@pytest.fixture(scope="module")
def kill_setup(tmp_path_factory: pytest.TempPathFactory, frames, champion: Champion):
    """An output root holding one complete run, the config of the next run (keep_runs=1,
    so it removes the earlier one), and the renames an uninterrupted run makes."""
    folder = tmp_path_factory.mktemp("kill-points")
    dirty = frames[1].astype({"amount": "string"})
    dirty.loc[4, "amount"] = "n/a"  # so that the run writes a quarantine file too
    data = write_parquet_atomic(dirty, folder / "input.parquet")
    template = folder / "template"
    score = {"keep_runs": 1}
    first = score_flow(
        flow_settings(
            champion.store,
            champion.train,
            data,
            template,
            score={**score, "run_date": "2026-02-01"},
        )
    )
    settings = flow_settings(
        champion.store, champion.train, data, template, score={**score, "run_date": "2026-02-02"}
    )
    config = write_config(folder / "score.yaml", settings)
    calibration = folder / "calibration"
    shutil.copytree(template, calibration)
    log = folder / "renames.log"
    code, err = run_killer(config, calibration, {"KILL_LOG": str(log)})
    assert code == 0, err
    return template, config, first.run_dir.name, log.read_text().splitlines(), data


def run_killer(config: Path, root: Path, env: dict[str, str]) -> tuple[int, str]:
    """Score into ``root`` (the config's output_dir, overridden) under ``KILLER``."""
    process = subprocess.run(
        [sys.executable, "-c", KILLER, "--threads", "1", "score", "--config", config]
        + ["--output-dir", root],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=_env({**prefect_env(), "KILL_ROOT": str(root), **env}),
        timeout=300,
    )
    return process.returncode, process.stderr[-3000:]


def step_numbers(renames: list[str]) -> dict[str, int]:
    """The number of each of ``STEPS`` in an uninterrupted run's renames."""
    targets = [line.split()[2] for line in renames]
    manifest = next(n for n, t in enumerate(targets, 1) if t.endswith("/manifest.json"))
    numbers = dict(zip(STEPS[2:], range(manifest, manifest + 5), strict=True))
    return {"first file": 1, "last file": manifest - 1, **numbers}


def test_an_uninterrupted_run_renames_in_the_order_that_keeps_sets_whole(kill_setup) -> None:
    _, _, first_id, renames, _ = kill_setup
    targets = [line.split()[2] for line in renames]
    steps = step_numbers(renames)
    assert len(targets) == steps["removal"], renames
    staged = targets[: steps["manifest.json"]]
    assert all(t.startswith("runs/.staging-") for t in staged), renames
    files = [t.rpartition("/")[2] for t in staged]
    assert {"scores.parquet", "quarantine.parquet", "report.html"} <= set(files), files
    assert files[-1] == "manifest.json" and files.count("manifest.json") == 1  # written last
    run_folder = targets[steps["run folder"] - 1]
    assert run_folder.startswith("runs/") and not run_folder.startswith("runs/.")
    assert targets[steps["run_index.parquet"] - 1 :][:2] == ["run_index.parquet", "latest.json"]
    assert targets[-1].startswith("runs/.removing-") and targets[-1].endswith(first_id)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("step", STEPS)
def test_a_run_killed_at_any_rename_leaves_latest_on_a_complete_set(
    tmp_path: Path, kill_setup, champion: Champion, step: str, when: str
) -> None:
    template, config, first_id, renames, data = kill_setup
    steps = step_numbers(renames)
    root = tmp_path / "root"
    shutil.copytree(template, root)
    code, err = run_killer(config, root, {"KILL_AT": f"{when}:{steps[step]}"})
    assert code == -signal.SIGKILL, err

    def done(name: str) -> bool:
        """Whether the kill came after the rename ``name``."""
        return steps[step] > steps[name] or (steps[step] == steps[name] and when == "after")

    latest = assert_consistent(root)
    assert (latest == first_id) == (not done("latest.json"))
    complete = [p.name for p in (root / "runs").iterdir() if not p.name.startswith(".")]
    assert len(complete) == 1 + done("run folder") - done("removal")
    assert len(run_index.read_index(root)) == 1 + done("run_index.parquet")

    # The next run removes what the dead one left (its staging, a half-removed folder, its
    # temporary files) and publishes normally.
    settings = flow_settings(
        champion.store, champion.train, data, root, score={"keep_runs": 1, "run_date": "2026-02-03"}
    )
    rerun = score_flow(settings)
    assert assert_consistent(root) == rerun.run_dir.name
    assert sorted(p.name for p in (root / "runs").iterdir()) == [rerun.run_dir.name]
    assert temporary_files(root) == []
    assert run_index.read_index(root)["run_id"].iloc[-1] == rerun.run_dir.name


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
    """Same input, same model version: two run folders with the same files and content.

    The report and the manifest differ only in when they were made and the run ids."""
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
        run_dir = latest_run_dir(out)
        verify_run(run_dir)
        snapshots.append({p.name: p.read_bytes() for p in sorted(run_dir.iterdir())})
    first, second = snapshots
    assert len(list((out / "runs").iterdir())) == 2
    assert sorted(first) == sorted(second)
    assert {"manifest.json", "quarantine.parquet", "report.html", "scores.parquet"} <= set(first)
    for name in ("scores.parquet", "quarantine.parquet"):
        assert first[name] == second[name], name
    manifests = [json.loads(s["manifest.json"]) for s in snapshots]
    for manifest in manifests:
        for key in ("mlflow_run_id", "run_id", "finished_at"):
            manifest.pop(key)
        manifest["files"].pop("report.html")
    assert manifests[0] == manifests[1]
    assert first["report.html"] != b""


# -- row accounting --------------------------------------------------------------------------
def test_accounting_check_counts_every_row() -> None:
    from flows.pipeline.summary import PartitionResult, RowAccountingError

    PartitionResult(rows_in=10, rows_scored=8, rows_quarantined=2).check_accounting()
    with pytest.raises(
        RowAccountingError, match="rows read 10 != rows scored 8 \\+ rows quarantined 1"
    ):
        PartitionResult(rows_in=10, rows_scored=8, rows_quarantined=1).check_accounting()


def test_a_run_that_loses_a_row_fails_and_publishes_nothing(
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
    assert sorted(p.name for p in out.iterdir()) == ["runs"]
    assert list((out / "runs").iterdir()) == []  # neither a run folder nor its staging
    client = MlflowClient(champion.store, champion.store)
    experiment = client.get_experiment_by_name("rel")
    (run,) = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    assert run.info.status == "FAILED"
