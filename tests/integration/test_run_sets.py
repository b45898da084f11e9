"""Dated runs published as sets: real flows, a real MLflow sqlite store, real Parquet.

Three dated scoring runs give three run folders, ``latest`` on the third and three rows in
the run index; two runs into one root at the same time both complete with consistent sets;
path placeholders and the training lookback work in real flow runs; a hive folder that
contradicts a file's column and an output inside the input are refused by the command line
with exit code 2.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runs import run_cli, write_config
from mlflow import MlflowClient

from flows.config import Settings, load_settings
from flows.demo_data import make_demo_frames
from flows.pipeline.writers import write_parquet_atomic
from flows.publishing import run_index
from flows.publishing.run_set import latest_run_dir, read_latest, verify_run
from flows.score_flow import score_flow
from flows.train_flow import train_flow
from vae_core.errors import InputError, OutputPathError
from vae_core.io import read_table

pytestmark = pytest.mark.usefixtures("prefect_server")

REPO = Path(__file__).resolve().parents[2]
MODEL = "runsets"
TINY = {"max_epochs": 3, "hidden_sizes": [16, 8], "latent_dim": 2, "random_state": 0}
#: The training history: one row every 8 hours for the 100 days before this date.
HISTORY_END = datetime(2026, 3, 1, tzinfo=UTC)


def settings_for(
    store: str, train_path: Path | str, score_path: Path | str, out: Path | str, **sections
) -> Settings:
    tree: dict = {
        "tracking": {"tracking_uri": store, "registered_model": MODEL, "experiment": MODEL},
        "train": {
            "data_path": str(train_path),
            "key_columns": ["payment_id"],
            "timestamp_column": "created_at",
            "detector": dict(TINY),
        },
        "score": {
            "input_path": str(score_path),
            "output_dir": str(out),
            "model_uri": f"models:/{MODEL}@champion",
            "batch_size": 50,
        },
    }
    for section, values in sections.items():
        tree[section] = {**tree[section], **values}
    return load_settings(files=[], environ={}, overrides=tree)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mlflow_store_factory):
    """A champion trained on a dated history (``history/2026/02/train.parquet``), and a
    scoring file per day (``daily/<date>.parquet``)."""
    root = tmp_path_factory.mktemp("runsets")
    train, score, _ = make_demo_frames(seed=3, n_train=300, n_score=60)
    train["created_at"] = [HISTORY_END - timedelta(hours=8 * (i + 1)) for i in range(len(train))]
    history = write_parquet_atomic(train, root / "history" / "2026" / "02" / "train.parquet")
    for day in (1, 2, 3):
        write_parquet_atomic(score, root / "daily" / f"2026-03-0{day}.parquet")
    store = mlflow_store_factory(root)
    outcome = train_flow(settings_for(store, history, root / "daily", root / "unused"))
    assert outcome.alias == "champion"
    return store, root, train


def with_score(settings: Settings, **values) -> Settings:
    return settings.model_copy(update={"score": settings.score.model_copy(update=values)})


def prefect_env() -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def test_three_dated_runs_give_three_sets_latest_on_the_third(capfd, setup, tmp_path) -> None:
    store, root, _ = setup
    out = tmp_path / "out"
    settings = settings_for(store, "unused", root / "daily" / "{date}.parquet", out)
    first = score_flow(with_score(settings, run_date=date(2026, 3, 1)))
    second = score_flow(with_score(settings, run_date=date(2026, 3, 2)))
    # The third through the command line's --date.
    config = write_config(tmp_path / "score.yaml", settings)
    code, _, err = run_cli(capfd, "score", "--config", config, "--date", "2026-03-03")
    assert code == 0, err

    folders = sorted(p for p in (out / "runs").iterdir())
    assert len(folders) == 3 and not any(p.name.startswith(".") for p in folders)
    third = read_latest(out)
    assert third is not None and third.run_date == date(2026, 3, 3)
    assert {first.run_dir, second.run_dir} < set(folders) and latest_run_dir(out) in folders
    for folder in folders:
        manifest = verify_run(folder)
        assert manifest["run_id"] == folder.name
        assert {"scores.parquet", "report.html"} <= set(manifest["files"])
    dates = [verify_run(folder)["run_date"] for folder in folders]
    assert sorted(dates) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    inputs = sorted(verify_run(folder)["input_path"] for folder in folders)
    assert inputs == [str(root / "daily" / f"2026-03-0{day}.parquet") for day in (1, 2, 3)]

    index = run_index.read_index(out)
    assert list(index.columns) == list(run_index.COLUMNS)
    assert index["run_date"].tolist() == [date(2026, 3, day) for day in (1, 2, 3)]
    assert index["run_id"].tolist()[:2] == [first.run_dir.name, second.run_dir.name]
    assert index["run_id"].iloc[-1] == third.run_id
    assert (index["rows_in"] == first.rows_in).all() and (index["model_version"] == "1").all()
    row = index.iloc[0]
    assert row["rows_in"] == row["rows_scored"] + row["rows_quarantined"]
    assert row["rows_flagged"] == first.n_flagged
    assert row["alert_rate"] == pytest.approx(first.n_flagged / first.rows_scored)
    assert row["score_p50"] <= row["score_p90"] <= row["score_p99"]
    assert row["finished_at"] > pd.Timestamp("2026-01-01", tz="UTC")
    scores = read_table(latest_run_dir(out) / "scores.parquet")
    assert len(scores) == row["rows_scored"]


def test_two_runs_into_one_root_at_once_both_complete(setup, tmp_path) -> None:
    store, root, _ = setup
    out = tmp_path / "out"
    settings = settings_for(store, "unused", root / "daily" / "{date}.parquet", out)
    config = write_config(tmp_path / "score.yaml", settings)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "--threads", "1", "score", "--config", config]
            + ["--date", day],
            cwd=REPO,
            env=prefect_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for day in ("2026-03-02", "2026-03-01")
    ]
    for process in processes:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
    folders = sorted((out / "runs").iterdir())
    assert len(folders) == 2 and not any(p.name.startswith(".") for p in folders)
    manifests = [verify_run(folder) for folder in folders]  # each set whole, none mixed
    assert sorted(m["run_date"] for m in manifests) == ["2026-03-01", "2026-03-02"]
    latest = read_latest(out)
    assert latest is not None and latest.run_date == date(2026, 3, 2)  # the newer date
    index = run_index.read_index(out)
    assert sorted(index["run_id"]) == [folder.name for folder in folders]


def test_a_run_whose_report_fails_publishes_nothing(setup, tmp_path, monkeypatch) -> None:
    """Scores are never published under a report that failed: the run fails, the previous
    set stays latest, the staging folder is gone."""
    from flows.reporting import report

    store, root, _ = setup
    out = tmp_path / "out"
    settings = settings_for(store, "unused", root / "daily" / "{date}.parquet", out)
    previous = score_flow(with_score(settings, run_date=date(2026, 3, 1)))

    def broken(*args, **kwargs):
        raise RuntimeError("the report template broke")

    monkeypatch.setattr(report, "write_report", broken)
    with pytest.raises(RuntimeError, match="the report template broke"):
        score_flow(with_score(settings, run_date=date(2026, 3, 2)))
    assert sorted(p.name for p in (out / "runs").iterdir()) == [previous.run_dir.name]
    assert read_latest(out).run_id == previous.run_dir.name
    assert run_index.read_index(out)["run_id"].tolist() == [previous.run_dir.name]
    client = MlflowClient(store, store)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(MODEL).experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert run.info.status == "FAILED"


@pytest.mark.parametrize("case", ["root is a file", "root inside the input"])
def test_the_flow_refuses_a_bad_output_root_before_mlflow_starts(setup, tmp_path, case) -> None:
    store, root, _ = setup
    if case == "root is a file":
        source, out = root / "daily" / "2026-03-01.parquet", tmp_path / "out"
        out.write_text("not a folder")
        error, message = OutputPathError, f"{out} is a file; the scoring output is a folder"
    else:
        source, out = root / "daily", root / "daily" / "{date}"
        error, message = InputError, f"the output folder {out}".replace("{date}", "2026-03-01")
    client = MlflowClient(store, store)
    experiment = client.get_experiment_by_name(MODEL)
    before = len(client.search_runs([experiment.experiment_id]))
    settings = settings_for(store, "unused", source, out, score={"run_date": "2026-03-01"})
    with pytest.raises(error, match=re.escape(message)):
        score_flow(settings)
    assert len(client.search_runs([experiment.experiment_id])) == before
    assert not (root / "daily" / "2026-03-01").exists()


def test_placeholders_and_lookback_in_real_flow_runs(setup, tmp_path) -> None:
    store, root, train = setup
    settings = settings_for(
        store,
        root / "history" / "{date:%Y}" / "{yesterday:%m}" / "train.parquet",
        root / "daily" / "{yesterday}.parquet",
        tmp_path / "out" / "{date:%Y/%m}",
        train={"lookback": "30d", "run_date": "2026-03-01"},
        score={"run_date": "2026-03-02"},
        tracking={"registered_model": f"{MODEL}-dated"},
    )
    outcome = train_flow(settings)
    expected = int((train["created_at"] >= HISTORY_END - timedelta(days=30)).sum())
    assert 50 < expected < len(train)  # the window leaves rows out
    client = MlflowClient(store, store)
    run = client.get_run(outcome.run_id)
    assert int(run.data.tags["row_count"]) == expected
    assert run.data.params["lookback"] == "30d"

    scored = score_flow(with_score(settings, model_uri=f"models:/{MODEL}-dated/{outcome.version}"))
    out = tmp_path / "out" / "2026" / "03"
    assert scored.run_dir.parent == out / "runs"
    manifest = verify_run(scored.run_dir)
    assert manifest["input_path"] == str(root / "daily" / "2026-03-01.parquet")
    assert read_latest(out).run_id == scored.run_dir.name


def test_an_empty_lookback_window_names_it(setup, tmp_path) -> None:
    store, root, _ = setup
    settings = settings_for(
        store,
        root / "history" / "2026" / "02" / "train.parquet",
        "unused",
        tmp_path,
        train={"lookback": "12w", "run_date": "2024-01-01"},
        tracking={"registered_model": f"{MODEL}-empty"},
    )
    with pytest.raises(Exception, match=r"train.lookback=12w before 2024-01-01\); widen"):
        train_flow(settings)


def test_a_hive_folder_contradicting_a_column_is_refused_by_the_cli(capfd, setup, tmp_path):
    store, root, _ = setup
    _, score, _ = make_demo_frames(seed=3, n_train=300, n_score=60)
    data = tmp_path / "data"
    # Text as pyarrow's string type, the type the folder's value is read as: the file's own
    # column is then silently replaced by the folder's value (a large_string column makes
    # pyarrow refuse the folder with a type clash instead).
    table = pa.Table.from_pandas(score, preserve_index=False)
    fields = [
        pa.field(f.name, pa.string()) if f.type == pa.large_string() else f for f in table.schema
    ]
    table = table.cast(pa.schema(fields))
    (data / "channel=mobile_app").mkdir(parents=True)
    pq.write_table(table, data / "channel=mobile_app" / "part.parquet")  # its own column
    settings = settings_for(store, "unused", data, tmp_path / "out")
    code, _, err = run_cli(capfd, "score", "--config", write_config(tmp_path / "s.yaml", settings))
    assert code == 2, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert f"{data / 'channel=mobile_app'}: the folder says channel='mobile_app'" in line
    other = next(v for v in score["channel"].unique() if v != "mobile_app")
    assert f"has its own 'channel' column holding {other!r}" in line
    assert not (tmp_path / "out" / "latest.json").exists()


def test_an_output_inside_the_input_is_refused_by_the_cli(capfd, setup, tmp_path) -> None:
    store, root, _ = setup
    data = tmp_path / "data"
    write_parquet_atomic(make_demo_frames(seed=3, n_train=10, n_score=20)[1], data / "a.parquet")
    settings = settings_for(store, "unused", data, data / "scores")
    code, _, err = run_cli(capfd, "score", "--config", write_config(tmp_path / "s.yaml", settings))
    assert code == 2, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert f"the output folder {data / 'scores'} is inside the input {data}" in line
    assert not (data / "scores").exists()
