"""``vae-anomaly demo``: the product's main job end to end on generated payments.

Generate data and write it as Parquet, run the training flow (MLflow run, registered model,
champion alias), run the scoring flow against ``models:/<name>@champion`` (scores,
quarantine, HTML report), then grade the flags against the injected labels that the model
never saw. Uses a local sqlite MLflow store in the work directory and a temporary local
Prefect server: no network, no other service. It ends with the commands that score again
and open the MLflow UI on that store, which work as printed.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

from flows.config import Settings, load_settings
from flows.demo_data import KEY_COLUMNS, DemoData, make_demo_data
from flows.pipeline import score_file as batch
from flows.pipeline.writers import write_parquet_atomic
from vae_core.io import read_table

STEPS = 4


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/{STEPS}] {text}", flush=True)


def write_inputs(data: DemoData, workdir: Path) -> tuple[Path, Path]:
    train_path, score_path = workdir / "train.parquet", workdir / "score.parquet"
    write_parquet_atomic(data.train, train_path)
    write_parquet_atomic(data.score, score_path)
    labels = pd.concat([data.score[list(KEY_COLUMNS)], data.score_labels, data.score_kinds], axis=1)
    write_parquet_atomic(labels, workdir / "score_labels.parquet")
    return train_path, score_path


def top_rows(scores_path: Path, n: int) -> pd.DataFrame:
    """The ``n`` highest-scoring rows of a scores file, ``row`` their position in it."""
    top = read_table(scores_path).nlargest(n, "score")
    top.insert(0, "row", top.index)
    return top.reset_index(drop=True)


def grade(scores_path: Path, data: DemoData) -> None:
    """ROC AUC of the scores and precision/recall of the flags, from the written output."""
    scores = read_table(scores_path)
    truth = pd.concat([data.score[list(KEY_COLUMNS)], data.score_labels], axis=1)
    merged = truth.merge(scores, on=list(KEY_COLUMNS), how="left", validate="one_to_one")
    labels = merged["is_injected_anomaly"].to_numpy()
    flags = merged["is_anomaly"].to_numpy(bool)
    hits = int(labels[flags].sum())
    auc = roc_auc_score(labels, merged["score"])
    precision = hits / flags.sum() if flags.any() else float("nan")
    print(
        f"ROC AUC of score: {auc:.3f} ({labels.sum()} injected anomalies in {len(labels):,} rows)"
    )
    print(
        f"precision of is_anomaly: {precision:.2f} ({hits} of {int(flags.sum())} flags are "
        f"injected anomalies); recall {hits / max(labels.sum(), 1):.2f}"
    )


def demo_settings(workdir: Path, train_path: Path, score_path: Path) -> Settings:
    store = (workdir / "mlflow.db").resolve()
    overrides = {
        "tracking": {"tracking_uri": f"sqlite:///{store}"},
        # Keys and timestamp are the demo data's own: the demo must not depend on which
        # configs/ (if any) the current directory holds.
        "train": {
            "data_path": str(train_path),
            "key_columns": list(KEY_COLUMNS),
            "timestamp_column": "created_at",
        },
        "score": {
            "input_path": str(score_path.absolute()),
            "output_dir": str((workdir / "scores").absolute()),
        },
    }
    return load_settings(job="train", overrides=overrides, environ={})


def run(workdir: Path, seed: int = 0) -> int:
    from flows.score_flow import score_flow
    from flows.train_flow import train_flow

    workdir.mkdir(parents=True, exist_ok=True)
    _step(1, f"generating demo payments (seed {seed})")
    data = make_demo_data(seed=seed)
    train_path, score_path = write_inputs(data, workdir / "data")
    print(
        f"{len(data.train):,} training rows -> {train_path}, {len(data.score):,} rows to score "
        f"-> {score_path}; about 2% of each are injected anomalies"
    )
    settings = demo_settings(workdir, train_path, score_path)

    _step(2, "training flow: fit, log to MLflow, register, promote")
    trained = train_flow(settings)
    print(f"{trained.model_name} v{trained.version} -> {trained.alias} ({trained.reason})")

    _step(3, f"scoring flow: {settings.score.model_uri} on {score_path}")
    scored = score_flow(settings)
    print(
        f"{scored.rows_in:,} rows in = {scored.rows_scored:,} scored + "
        f"{scored.rows_quarantined:,} quarantined; {scored.n_flagged:,} flagged"
    )
    print(batch.format_top(top_rows(scored.scores_path, 10), list(KEY_COLUMNS)))

    _step(4, "grading against the injected labels (never shown to the model)")
    grade(scored.scores_path, data)
    print(f"\nreport:  {scored.report_path}\nscores:  {scored.scores_path}")
    print("\nnext: score the data again with the champion, and browse the runs in MLflow:")
    for line in next_commands(settings):
        print(f"  {line}")
    return 0


def executable(name: str) -> str:
    """How to call ``name`` of this environment: bare if the shell finds this one, else
    its path (relative when below the working directory): after ``make demo`` the
    environment is not activated, and a bare ``mlflow`` may be another installation's."""
    here = Path(sys.executable).parent / name
    if not here.is_file():
        return name
    found = shutil.which(name)
    if found and Path(found).resolve() == here.resolve():
        return name
    try:
        return str(here.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(here.absolute())


def next_commands(settings: Settings) -> list[str]:
    """The commands the demo ends with; each works as printed, from any directory: the
    store and the paths are named in full, so no config file is needed to find them."""
    uri = settings.tracking.tracking_uri
    score = [
        executable("vae-anomaly"), "score", "--tracking-uri", uri,
        "--input", settings.score.input_path, "--output-dir", settings.score.output_dir,
    ]  # fmt: skip
    ui = [executable("mlflow"), "ui", "--backend-store-uri", uri]
    return [shlex.join(score), shlex.join(ui)]
