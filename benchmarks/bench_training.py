"""Training throughput against PyOD's VAE: same layers, same data, same epochs, same batches.

Both detectors are fitted on the same training split with the same encoder/decoder sizes,
latent size, batch size and number of epochs (early stopping off), with the same torch
thread count, one after the other in this process. Training samples per second = rows that
took part in gradient steps x epochs / wall time of ``fit`` (each ``fit`` includes its own
preprocessing and the scoring pass it makes at the end). ROC AUC of both on the same
held-out rows is printed too, so speed is never bought with quality unseen.

    python benchmarks/bench_training.py                     # 100,000 generated rows
    python benchmarks/bench_training.py --data ../shared/datasets/adbench/32_shuttle.parquet
    python benchmarks/bench_training.py --rows 2000 --epochs 2 --json out.json  # quick check

Needs the ``bench`` extra (PyOD).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_scoring import machine
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from vae_core import VAEAnomalyDetector
from vae_core.sizing import auto_sizes

#: PyOD's own default; the project sizes its batch from the data ("auto").
PYOD_DEFAULT_BATCH = 32


def generated(n_rows: int, n_columns: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Correlated numeric features; 2% of rows break the correlation (label 1)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(4, n_columns))
    values = rng.normal(size=(n_rows, 4)) @ mixing + 0.3 * rng.normal(size=(n_rows, n_columns))
    labels = (rng.random(n_rows) < 0.02).astype(int)
    values[labels == 1] = rng.normal(size=(int(labels.sum()), n_columns)) * values.std(axis=0)
    return pd.DataFrame(values, columns=[f"x{j}" for j in range(n_columns)]), labels


def from_file(path: Path, label: str, n_rows: int | None) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.read_parquet(path)
    if n_rows is not None and len(frame) > n_rows:
        frame = frame.sample(n_rows, random_state=0)
    labels = frame.pop(label).to_numpy().astype(int)
    return frame.astype("float64"), labels


def fit_project(
    train: pd.DataFrame, args: argparse.Namespace, batch_size: int | str
) -> tuple[VAEAnomalyDetector, dict]:
    detector = VAEAnomalyDetector(
        hidden_sizes=tuple(args.hidden),
        latent_dim=args.latent,
        max_epochs=args.epochs,
        batch_size=batch_size,
        patience=10**6,
        random_state=0,
        device="cpu",
    )
    started = time.perf_counter()
    detector.fit(train)
    seconds = time.perf_counter() - started
    epochs = len(detector.training_results_[0].history)
    # rows in gradient steps: the validation split is held out of training
    n_train = len(train) - max(2, int(round(detector.validation_fraction * len(train))))
    batch = auto_sizes(n_train, input_dim=1, batch_size=batch_size).batch_size
    return detector, {
        "batch_size": batch,
        "fit_s": seconds,
        "epochs": epochs,
        "train_rows": n_train,
        "samples_per_s": n_train * epochs / seconds,
    }


def fit_pyod(train: pd.DataFrame, args: argparse.Namespace, batch_size: int):
    from pyod.models.vae import VAE

    model = VAE(
        encoder_neuron_list=list(args.hidden),
        decoder_neuron_list=list(reversed(args.hidden)),
        latent_dim=args.latent,
        epoch_num=args.epochs,
        batch_size=batch_size,
        random_state=0,
        verbose=0,
        device="cpu",
    )
    started = time.perf_counter()
    model.fit(train.to_numpy(dtype=np.float64))
    seconds = time.perf_counter() - started
    return model, {
        "batch_size": batch_size,
        "fit_s": seconds,
        "epochs": args.epochs,
        "train_rows": len(train),
        "samples_per_s": len(train) * args.epochs / seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="labelled Parquet file (default: generated)")
    parser.add_argument("--label", default="label", help="label column of --data")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--columns", type=int, default=20, help="generated data only")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--batch-size", type=int, default=256, help="batch size of the same-batch comparison"
    )
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 32])
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.data is not None:
        frame, labels = from_file(args.data, args.label, args.rows)
        source = args.data.name
    else:
        frame, labels = generated(args.rows, args.columns)
        source = f"generated {args.rows:,} x {args.columns}"
    train, test, _, y_test = train_test_split(
        frame, labels, test_size=0.3, random_state=0, stratify=labels
    )
    # Warm-up: torch's thread pools and kernels start lazily; neither detector should pay
    # for that inside its timed fit.
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    fit_project(train.iloc[:1024], warm, 256)
    fit_pyod(train.iloc[:1024], warm, 256)
    # Two comparisons: the same batch size for both (the strict one), and each library's
    # default batch size (what a user who changes nothing gets).
    comparisons = {
        "same_batch": (args.batch_size, args.batch_size),
        "defaults": ("auto", PYOD_DEFAULT_BATCH),
    }
    rows, report = (
        [],
        {
            "benchmark": "training",
            "data": source,
            "rows_train": len(train),
            "epochs": args.epochs,
            "hidden": args.hidden,
            "latent": args.latent,
            "threads": args.threads,
            "machine": machine(),
        },
    )
    for name, (ours_batch, pyod_batch) in comparisons.items():
        ours, ours_figures = fit_project(train, args, ours_batch)
        theirs, theirs_figures = fit_pyod(train, args, pyod_batch)
        ours_figures["roc_auc"] = roc_auc_score(y_test, ours.decision_function(test))
        theirs_figures["roc_auc"] = roc_auc_score(
            y_test, theirs.decision_function(test.to_numpy(dtype=np.float64))
        )
        speedup = ours_figures["samples_per_s"] / theirs_figures["samples_per_s"]
        report[name] = {"project": ours_figures, "pyod_vae": theirs_figures, "speedup": speedup}
        rows += [
            {"comparison": name, "detector": "project", **ours_figures},
            {"comparison": name, "detector": "PyOD VAE", **theirs_figures},
        ]
    print(
        f"training on {source}: {len(train):,} rows, {args.epochs} epochs, layers "
        f"{args.hidden} -> {args.latent}, {args.threads} threads"
    )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    for name in comparisons:
        print(f"speedup (samples/s), {name.replace('_', ' ')}: {report[name]['speedup']:.1f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
