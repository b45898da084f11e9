"""Fit time on wide, two-valued data: the project against PyOD's VAE, in one run.

The set is ``derived_sets.wide_set``: musk binarised at nine percentiles, 1,400 rows x
1,494 two-valued columns. Split as the tabular harness splits (stratified 70/30, seed 0),
both detectors fitted with their defaults on one torch thread, one after the other. CPU
seconds (the process's) are recorded beside wall seconds: on a shared machine they are
the steadier measure of the work a fit does.

    python benchmarks/bench_wide.py ../shared/datasets --json benchmarks/results/wide.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from derived_sets import wide_set  # noqa: E402


def _fit(
    name: str, x_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, epochs: int | None
) -> dict:
    if name == "project":
        from vae_core import VAEAnomalyDetector

        detector = VAEAnomalyDetector(random_state=0, max_epochs=epochs or "auto")
    else:
        from pyod.models.vae import VAE

        detector = VAE(contamination=0.1, random_state=0, verbose=0)
    start, start_cpu = time.perf_counter(), time.process_time()
    detector.fit(x_train)
    fitted, fitted_cpu = time.perf_counter(), time.process_time()
    scores = detector.decision_function(x_test)
    scored = time.perf_counter()
    return {
        "detector": name,
        "fit_s": round(fitted - start, 2),
        "fit_cpu_s": round(fitted_cpu - start_cpu, 2),
        "score_s": round(scored - fitted, 3),
        "auroc": round(float(roc_auc_score(y_test, scores)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path)
    parser.add_argument("--detectors", default="project,pyod_vae")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--epochs",
        type=int,
        help="the project's max_epochs (default auto): a short fit, "
        "to compare the cost of the same steps between versions of the code",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    frame = wide_set(args.datasets)
    y = frame.pop("label").to_numpy()
    x = frame.to_numpy(np.float64)
    x_train, x_test, _, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=0)
    rows = []
    for name in args.detectors.split(","):
        rows.append({**_fit(name, x_train, x_test, y_test, args.epochs), "shape": list(x.shape)})
        print(json.dumps(rows[-1]), flush=True)
    fits = {r["detector"]: (r["fit_s"], r["fit_cpu_s"]) for r in rows}
    if {"project", "pyod_vae"} <= fits.keys():
        (wall, cpu), (pyod_wall, pyod_cpu) = fits["project"], fits["pyod_vae"]
        print(f"project / PyOD VAE fit time: wall {wall / pyod_wall:.2f}, CPU {cpu / pyod_cpu:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
