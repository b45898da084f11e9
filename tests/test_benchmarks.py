"""The benchmark summary script runs on a tiny results file and prints the means."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "summarize_quality.py"


def test_summarize_quality_prints_means_per_detector(tmp_path: Path) -> None:
    rows = [
        {"dataset": "a", "detector": "project", "seed": 0, "auroc": 0.9, "ap": 0.5, "f1": 0.4,
         "fit_s": 1.0},
        {"dataset": "a", "detector": "project", "seed": 1, "auroc": 0.7, "ap": 0.3, "f1": 0.2,
         "fit_s": 3.0},
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
