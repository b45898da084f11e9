"""SKAB outlier detection with the windowed VAE, SKAB's own protocol.

For each experiment file: fit ``SensorVAEDetector`` on the first 400 rows, score the rest,
flags from the label-free threshold (and the alarm rule); binary F1, false-alarm rate (FAR)
and missed-alarm rate (MAR) over all scored points of all files together, no point
adjustment. This matches ``bench_skab.py`` of the shared evaluation harness: same files,
same split, same metrics. The scored part is streamed after the training part, so its first
rows get full windows from the end of the training part, as in production scoring.

A second figure checks false alarms on normal data no choice was made on: SKAB's
anomaly-free series, where one is found under the folders, cut into slices the length of
an experiment file, each fitted on its first 400 rows and scored on the rest as above.

Usage::

    python benchmarks/skab.py ../shared/datasets/skab --out benchmarks/results/skab.json
    python benchmarks/skab.py ../shared/datasets/skab --set window_length=20 --set alarm_k=3

``--set key=value`` overrides one ``SensorVAEDetector`` parameter (``detector.key=value``
one of the inner ``VAEAnomalyDetector``); the defaults below are the chosen configuration.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from flows.pipeline.writers import write_bytes_atomic
from vae_core.sensor import SensorVAEDetector

TRAIN_ROWS = 400
#: Rows per slice of the anomaly-free series: about an experiment file's length.
FREE_SLICE_ROWS = 1150
LABELS = ("anomaly", "changepoint")

#: The one configuration used for every file: the library's defaults (window of 20 rows
#: with first differences, 6-IQR fence on the training windows' scores, no alarm rule).
DEFAULT_CONFIG: dict[str, Any] = {
    "timestamp_column": "timestamp",
    "detector_params": {"random_state": 0, "device": "cpu"},
}


def _parquet_files(dirs: list[str], anomaly_free: bool) -> list[str]:
    out: list[str] = []
    for folder in dirs:
        out += sorted(
            p
            for p in glob.glob(os.path.join(folder, "**", "*.parquet"), recursive=True)
            if ("anomaly-free" in p) == anomaly_free
        )
    return out


def experiment_files(dirs: list[str]) -> list[str]:
    return _parquet_files(dirs, anomaly_free=False)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    out = {**config, "detector_params": dict(config["detector_params"])}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key.startswith("detector."):
            out["detector_params"][key.removeprefix("detector.")] = _parse_value(value)
        else:
            out[key] = _parse_value(value)
    return out


def flags_for_file(path: str, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, flags and scores of the rows after the first ``TRAIN_ROWS``, in file order."""
    frame = pd.read_parquet(path)
    labels = frame["anomaly"].to_numpy().astype(int)
    flags, scores = flags_after_training(frame.drop(columns=list(LABELS)), config)
    return labels[TRAIN_ROWS:], flags, scores


def flags_after_training(
    data: pd.DataFrame, config: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Fit on the first ``TRAIN_ROWS`` rows; flags and scores of the rest, streamed after them."""
    train, test = data.iloc[:TRAIN_ROWS], data.iloc[TRAIN_ROWS:]
    detector = SensorVAEDetector(**config).fit(train)
    stream = detector.stream(top_k=0)
    stream.score(train)
    scores = stream.score(test).to_frame()
    return scores["is_anomaly"].to_numpy().astype(int), scores["score"].to_numpy()


def false_alarms(paths: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """The false-alarm rate on slices of anomaly-free series (every point is normal)."""
    per_slice: list[float] = []
    flagged = points = 0
    for path in paths:
        frame = pd.read_parquet(path)
        for start in range(0, len(frame) - FREE_SLICE_ROWS + 1, FREE_SLICE_ROWS):
            flags, _ = flags_after_training(frame.iloc[start : start + FREE_SLICE_ROWS], config)
            per_slice.append(float(flags.mean()))
            flagged, points = flagged + int(flags.sum()), points + len(flags)
    return {"far": flagged / points if points else 0.0, "points": points, "per_slice": per_slice}


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    tp = int(((y == 1) & (p == 1)).sum())
    fp = int(((y == 0) & (p == 1)).sum())
    fn = int(((y == 1) & (p == 0)).sum())
    tn = int(((y == 0) & (p == 0)).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {
        "f1": f1,
        "far": fp / (fp + tn) if fp + tn else 0.0,
        "mar": fn / (fn + tp) if fn + tp else 0.0,
        "points": int(len(y)),
    }


def evaluate(paths: list[str], config: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    ys, ps, per_file = [], [], {}
    for path in paths:
        y, p, _ = flags_for_file(path, config)
        ys.append(y)
        ps.append(p)
        name = os.path.relpath(path, os.path.dirname(os.path.dirname(path)))
        per_file[name] = metrics(y, p)
    overall = metrics(np.concatenate(ys), np.concatenate(ps))
    return {
        **overall,
        "files": len(paths),
        "mean_file_f1": float(np.mean([m["f1"] for m in per_file.values()])),
        "seconds": round(time.perf_counter() - started, 1),
        "config": config,
        "per_file": per_file,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="folders holding SKAB experiment Parquet files")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="write the result JSON here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = experiment_files(args.dirs)
    if not paths:
        print(f"no experiment files under {args.dirs}", file=sys.stderr)
        return 2
    config = apply_overrides(DEFAULT_CONFIG, args.set)
    result = evaluate(paths, config)
    print(
        f"files {result['files']}  F1 {result['f1']:.3f}  FAR {100 * result['far']:.2f}%  "
        f"MAR {100 * result['mar']:.2f}%  mean file F1 {result['mean_file_f1']:.3f}  "
        f"({result['seconds']} s)  {json.dumps(args.set)}"
    )
    free = _parquet_files(args.dirs, anomaly_free=True)
    if free:
        result["anomaly_free"] = false_alarms(free, config)
        slices = result["anomaly_free"]["per_slice"]
        print(
            f"anomaly-free: {len(slices)} slices  FAR {100 * result['anomaly_free']['far']:.2f}%"
            f"  (per slice {100 * min(slices):.1f}-{100 * max(slices):.1f}%)"
        )
    if args.out:
        payload = json.dumps(result, indent=2, sort_keys=True).encode()
        write_bytes_atomic(payload, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
