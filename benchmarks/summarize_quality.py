"""Print per-detector means of detection-quality results written by the eval harnesses.

Usage: python benchmarks/summarize_quality.py RESULTS.jsonl [RESULTS.jsonl ...]

Each input holds one JSON line per (dataset, detector, seed), as written by
``bench_tabular.py`` / ``bench_mixed.py``. Prints, per file, a markdown table of mean ROC AUC,
average precision, flag F1 and fit seconds per detector (failed runs are counted and shown),
then the per-dataset ROC AUC of every detector.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

METRICS = {
    "auroc": "mean ROC AUC",
    "ap": "mean AP",
    "f1": "mean flag F1",
    "fit_s": "mean fit s",
    "seconds": "mean fit+score s",
}


def to_markdown(table: pd.DataFrame) -> str:
    """A markdown table without the optional tabulate dependency."""
    header = [str(table.index.name or ""), *map(str, table.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in table.iterrows():
        cells = [
            "-" if pd.isna(v) else str(int(v)) if name in ("runs", "failed") else f"{v:.3f}"
            for name, v in row.items()
        ]
        lines.append("| " + " | ".join([str(label), *cells]) + " |")
    return "\n".join(lines)


def load(path: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.DataFrame(rows)


def summary_table(results: pd.DataFrame) -> str:
    ok = results[results.get("error").isna()] if "error" in results else results
    present = [m for m in METRICS if m in ok.columns]
    table = ok.groupby("detector")[present].mean().sort_values(present[0], ascending=False)
    table = table.reindex([*table.index, *sorted(set(results["detector"]) - set(table.index))])
    table.columns = [METRICS[m] for m in present]
    table["runs"] = ok.groupby("detector").size().reindex(table.index).fillna(0)
    if "error" in results:
        table["failed"] = results.groupby("detector")["error"].count()
    return to_markdown(table)


def per_dataset_table(results: pd.DataFrame) -> str:
    metric = "auroc" if "auroc" in results else "roc_auc"
    table = results.pivot_table(index="dataset", columns="detector", values=metric)
    return to_markdown(table)


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__)
        return 2
    for name in paths:
        results = load(Path(name))
        print(f"## {name}\n\n{summary_table(results)}\n")
        if "dataset" in results:
            print(f"{per_dataset_table(results)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
