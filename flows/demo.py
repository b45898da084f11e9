"""``vae-anomaly demo``: the product's main job end to end on generated payments.

Generate data and write it as Parquet, run the training flow (MLflow run, registered model,
champion alias), run the scoring flow against ``models:/<name>@champion`` (scores,
quarantine, HTML report), then grade the flags against the injected labels that the model
never saw. Uses a local sqlite MLflow store in the work directory and Prefect's ephemeral
server: no network, no other service.
"""

from __future__ import annotations

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
        "score": {"input_path": str(score_path), "output_dir": str(workdir / "scores")},
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
    print(f"MLflow:  mlflow ui --backend-store-uri {settings.tracking.tracking_uri}")
    return 0
