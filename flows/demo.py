"""``vae-anomaly demo``: the whole batch job on generated payments, in well under a minute.

Generate data, write it as Parquet, fit with default settings, save, reload, score the
scoring file into a Parquet output, print the top anomalies and what drove them, then
grade the flags against the injected labels that the detector never saw. Needs no network
and no file outside the working directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from flows import batch
from flows.demo_data import KEY_COLUMNS, DemoData, make_demo_data
from vae_core import VAEAnomalyDetector
from vae_core.io import read_table, write_parquet_atomic

STEPS = 5


def _step(number: int, text: str) -> None:
    print(f"\n[{number}/{STEPS}] {text}", flush=True)


def write_inputs(data: DemoData, workdir: Path) -> tuple[Path, Path]:
    train_path, score_path = workdir / "train.parquet", workdir / "score.parquet"
    write_parquet_atomic(data.train, train_path)
    write_parquet_atomic(data.score, score_path)
    labels = pd.concat([data.score[list(KEY_COLUMNS)], data.score_labels, data.score_kinds], axis=1)
    write_parquet_atomic(labels, workdir / "score_labels.parquet")
    return train_path, score_path


def reload_and_check(
    detector: VAEAnomalyDetector, model_dir: Path, sample: pd.DataFrame
) -> VAEAnomalyDetector:
    """Reload the saved model and confirm it scores exactly like the one in memory."""
    loaded = VAEAnomalyDetector.load(model_dir)
    same = np.array_equal(detector.decision_function(sample), loaded.decision_function(sample))
    files = ", ".join(sorted(p.name for p in model_dir.iterdir()))
    print(f"saved to {model_dir} ({files}); reloaded scores identical: {'yes' if same else 'NO'}")
    return loaded


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


def run(workdir: Path, seed: int = 0) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    _step(1, f"generating demo payments (seed {seed})")
    data = make_demo_data(seed=seed)
    train_path, score_path = write_inputs(data, workdir)
    print(
        f"{len(data.train):,} training rows -> {train_path}, {len(data.score):,} rows to score "
        f"-> {score_path}; about 2% of each are injected anomalies"
    )

    _step(2, "fitting VAEAnomalyDetector with default settings")
    train = read_table(train_path)
    detector = VAEAnomalyDetector(key_columns=KEY_COLUMNS, random_state=seed, verbose=True)
    model_dir = workdir / "model"
    seconds = batch.fit_and_save(detector, train, model_dir, overwrite=True)
    for line in batch.fit_summary(detector, len(train), seconds):
        print(line)

    _step(3, "saving and reloading the model")
    loaded = reload_and_check(detector, model_dir, data.score.head(256))

    scores_path = workdir / "scores.parquet"
    _step(4, f"scoring {score_path}")
    summary = batch.score_file(loaded, str(score_path), scores_path)
    batch.print_score_summary(
        summary, loaded, scores_path, extra=data.score_kinds.rename("injected")
    )

    _step(5, "grading against the injected labels (never shown to the detector)")
    grade(scores_path, data)
    return 0
