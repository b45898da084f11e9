"""How long the command line takes to start: ``--help``, ``version``, ``score-file --help``.

Each case runs in a fresh interpreter, the way the ``vae-anomaly`` script runs it, several
times; the figure is the median wall time. The bare interpreter (``python -c pass``) is
measured in the same run and each figure is also given as a ratio to it, so results from
busy or slow machines can be compared. For reference, the last line times importing the
library (torch, pandas, scikit-learn), which the light commands no longer do.

    python benchmarks/bench_cli_startup.py             # 15 runs per case
    python benchmarks/bench_cli_startup.py --runs 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: What the installed ``vae-anomaly`` script does.
ENTRY = "import sys; from flows.cli import main; sys.exit(main(sys.argv[1:]))"
CASES: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "vae-anomaly --help": ["-c", ENTRY, "--help"],
    "vae-anomaly version": ["-c", ENTRY, "version"],
    "vae-anomaly score-file --help": ["-c", ENTRY, "score-file", "--help"],
    "import vae_core (reference)": ["-c", "import vae_core"],
}


def wall_times(args: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per case (default 15)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    wall_times(CASES["vae-anomaly --help"], 1)  # warm the file cache and bytecode first
    medians = {name: statistics.median(wall_times(argv, args.runs)) for name, argv in CASES.items()}
    baseline = medians["python -c pass"]
    print(f"{'case':32} {'median s':>9} {'x python -c pass':>17}")
    for name, seconds in medians.items():
        print(f"{name:32} {seconds:9.3f} {seconds / baseline:17.1f}")
    if args.json:
        figures = {name: {"median_s": s, "ratio": s / baseline} for name, s in medians.items()}
        args.json.write_text(json.dumps({"runs": args.runs, "cases": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
