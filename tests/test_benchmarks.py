"""The benchmark summary script runs on a tiny results file and prints the means."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "summarize_quality.py"


def test_summarize_quality_prints_means_per_detector(tmp_path: Path) -> None:
    rows = [
        {
            "dataset": "a",
            "detector": "project",
            "seed": 0,
            "auroc": 0.9,
            "ap": 0.5,
            "f1": 0.4,
            "fit_s": 1.0,
        },
        {
            "dataset": "a",
            "detector": "project",
            "seed": 1,
            "auroc": 0.7,
            "ap": 0.3,
            "f1": 0.2,
            "fit_s": 3.0,
        },
        {"dataset": "a", "detector": "iforest", "seed": 0, "error": "ValueError('x')"},
    ]
    results = tmp_path / "r.jsonl"
    results.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(results)], capture_output=True, text=True, check=True
    ).stdout
    project = next(line for line in out.splitlines() if line.startswith("| project"))
    assert project.split(" | ")[1:5] == ["0.800", "0.400", "0.300", "2.000"]
    assert "| iforest" in out  # the failed run is counted, not hidden


BENCHMARKS = SCRIPT.parent


def run_benchmark(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), "--threads", "1", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_scoring_benchmark_runs_on_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "scoring.json"
    printed = run_benchmark(
        "bench_scoring.py",
        "--rows",
        "3000",
        "7000",
        "--columns",
        "5",
        "--batch-size",
        "1024",
        "--json",
        str(out),
    )
    report = json.loads(out.read_text())
    assert [r["rows"] for r in report["results"]] == [3000, 7000]
    for row in report["results"]:
        assert row["end_to_end_rows_per_s"] > 0 and row["ceiling_rows_per_s"] > 0
        assert row["peak_rss_mb"] > 0
        assert row["ratio_to_ceiling"] == row["end_to_end_rows_per_s"] / row["ceiling_rows_per_s"]
        assert row["ratio_to_bare_forward"] == (
            row["end_to_end_rows_per_s"] / row["bare_forward_rows_per_s"]
        )
        assert row["bare_forward_cpu_s_per_m"] > 0
    assert "ratio_to_bare_forward" in printed and report["machine"]["cores"] >= 1


def test_training_benchmark_runs_on_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "training.json"
    printed = run_benchmark(
        "bench_training.py", "--rows", "1500", "--columns", "6", "--epochs", "1", "--json", str(out)
    )
    report = json.loads(out.read_text())
    for comparison in ("same_batch", "defaults"):
        figures = report[comparison]
        assert figures["speedup"] > 0
        for detector in ("project", "pyod_vae"):
            assert 0.0 <= figures[detector]["roc_auc"] <= 1.0
            assert figures[detector]["epochs"] == 1
    assert report["same_batch"]["pyod_vae"]["batch_size"] == 256
    assert report["defaults"]["pyod_vae"]["batch_size"] == 32
    assert "speedup (samples/s), same batch" in printed


def test_dask_benchmark_runs_on_a_tiny_size(tmp_path: Path) -> None:
    out = tmp_path / "dask.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_dask.py"),
            "--files",
            "2",
            "--rows-per-file",
            "500",
            "--columns",
            "4",
            "--workers",
            "1",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(r["runner"], r["workers"]) for r in report["results"]] == [
        ("in-process", 1),
        ("dask", 1),
    ]
    assert all(r["rows_per_s"] > 0 for r in report["results"])


def _derived_sets():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import derived_sets
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return derived_sets


def test_derived_variants_keep_labels_and_take_the_regimes_form() -> None:
    import numpy as np
    import pandas as pd

    derived_sets = _derived_sets()
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.lognormal(size=(500, 4)), columns=[f"x{j}" for j in range(4)])
    frame["const"] = 1.0
    frame["label"] = (rng.uniform(size=500) < 0.05).astype(int)
    for variant, n_columns in (("binary", 4), ("levels", 4), ("counts", 4), ("wide", 36)):
        out = derived_sets.derive(frame, variant)
        features = out.drop(columns="label").to_numpy()
        assert features.shape == (500, n_columns), variant  # the constant column left out
        np.testing.assert_array_equal(out["label"], frame["label"])
        assert (features == np.round(features)).all() and features.min() >= 0, variant
    assert set(np.unique(derived_sets.derive(frame, "binary").drop(columns="label"))) == {0, 1}
    levels = derived_sets.derive(frame, "levels").drop(columns="label").to_numpy()
    assert levels.max() == 16
    counts = derived_sets.derive(frame, "counts").drop(columns="label").to_numpy()
    assert 0.65 <= (counts == 0).mean() <= 0.75 and counts.max() == 8
    # monotone: the largest value of a column stays at its highest level
    top = frame["x0"].to_numpy().argmax()
    assert levels[top, 0] == 16 and counts[top, 0] == 8
