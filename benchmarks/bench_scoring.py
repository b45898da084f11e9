"""Streaming scoring: rows/s Parquet in -> Parquet out, peak memory, and the model ceiling.

For each size, a Parquet file of that many rows (an id key and ``--columns`` numeric
features, written in row groups) is generated without ever holding it in memory. One model
is trained on a sample. Each size is then scored in a fresh subprocess, so that its peak
RSS is its own, by the scoring flow's per-partition function (read in record batches,
validate, preprocess, score, write batch by batch). In the same subprocess, the model's
scoring pass (forward pass plus the per-feature likelihood terms, the work that produces a
score) runs on the same batches already encoded in memory: that rate is the ceiling the
end-to-end rate is compared with. The bare ``model(x)`` rate (the same chunks, forward
pass only) and the ratio to it are printed too. Wall-clock rates suffer from whatever else
runs on the machine; CPU seconds per row (all threads) do much less, so the model's share
of the end-to-end CPU work is printed as well.

    python benchmarks/bench_scoring.py --rows 1000000 3000000 10000000
    python benchmarks/bench_scoring.py --rows 20000 --json out.json   # a quick check
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 262_144
#: Batches encoded in memory for the ceiling: enough for a steady rate, bounded memory.
CEILING_ROWS = 1_048_576


def generate(path: Path, n_rows: int, n_columns: int, seed: int = 0) -> None:
    """Correlated numeric features with a few outliers, written one row group at a time."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(4, n_columns))
    schema = pa.schema([("id", pa.int64())] + [(f"x{j}", pa.float64()) for j in range(n_columns)])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_rows, ROW_GROUP):
            n = min(ROW_GROUP, n_rows - start)
            values = rng.normal(size=(n, 4)) @ mixing + 0.3 * rng.normal(size=(n, n_columns))
            outliers = rng.random(n) < 0.001
            values[outliers] += rng.normal(scale=8.0, size=(int(outliers.sum()), n_columns))
            columns = [pa.array(np.arange(start, start + n))] + [
                pa.array(values[:, j]) for j in range(n_columns)
            ]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))


def train(data: Path, model_dir: Path, threads: int) -> None:
    import torch

    from vae_core import VAEAnomalyDetector

    torch.set_num_threads(threads)
    sample = pq.ParquetFile(data).read_row_group(0).to_pandas().iloc[:20_000]
    VAEAnomalyDetector(random_state=0, key_columns=("id",), max_epochs=20).fit(sample).save(
        model_dir
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory, in MB.

    On Linux from ``VmHWM``: a child's ``ru_maxrss`` also counts its parent's peak before
    the fork (here: generating the data), which made a 1M x 200 run report 2.5 GB.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes there


def encoded_batches(detector, data: Path, batch_size: int, at_least: int) -> tuple[list, int]:
    """The first batches score_partition scores (wide data is cut to a cell budget),
    encoded, until ``at_least`` rows; and their row count."""
    from flows.pipeline.partitions import batch_rows
    from vae_core.io import iter_batches

    rows_per_batch = batch_rows(batch_size, len(detector.schema_.columns))
    encoded, n_encoded = [], 0
    for frame in iter_batches(data, batch_size=rows_per_batch):
        encoded.append(detector.preprocessor_.transform(frame))
        n_encoded += len(frame)
        if n_encoded >= at_least:
            break
    return encoded, n_encoded


def figures(
    best: dict[str, tuple[float, float]], rss_mb: float, n_rows: int, n_encoded: int
) -> dict:
    """Rates from the best (wall, CPU) seconds of each measurement."""
    per_m = {
        name: cpu / (n_rows if name == "end_to_end" else n_encoded) * 1e6
        for name, (_, cpu) in best.items()
    }
    return {
        "rows": n_rows,
        "end_to_end_rows_per_s": n_rows / best["end_to_end"][0],
        "end_to_end_s": best["end_to_end"][0],
        "ceiling_rows_per_s": n_encoded / best["ceiling"][0],
        "bare_forward_rows_per_s": n_encoded / best["bare_forward"][0],
        "peak_rss_mb": rss_mb,
        # CPU seconds per million rows, all threads: the work, whatever else the machine
        # runs. The model's share is the part of the end-to-end work that is model work.
        "end_to_end_cpu_s_per_m": per_m["end_to_end"],
        "ceiling_cpu_s_per_m": per_m["ceiling"],
        "bare_forward_cpu_s_per_m": per_m["bare_forward"],
        "model_share_of_cpu": per_m["ceiling"] / per_m["end_to_end"],
    }


def measure(
    data: Path, model_dir: Path, out: Path, batch_size: int, threads: int, repeat: int
) -> dict:
    """Run in a fresh process: end-to-end scoring and the ceilings on the same batches.

    The three are measured in turn, ``repeat`` rounds, best of each: a shared machine's
    speed drifts (by 1.7x within minutes on the 2-vCPU machine of the README's figures),
    and measuring each right after the others keeps such drift out of their ratios.
    """
    import torch

    from flows.pipeline.partitions import score_partition
    from vae_core import VAEAnomalyDetector
    from vae_core.scoring import chunk_rows, score_encoded

    torch.set_num_threads(threads)
    detector = VAEAnomalyDetector.load(model_dir)
    n_rows = pq.ParquetFile(data).metadata.num_rows
    layout, models = detector.preprocessor_.layout, detector.models_

    def end_to_end() -> None:
        result = score_partition(
            detector,
            str(data),
            None,
            out,
            out.with_name("quarantine.parquet"),
            batch_size=batch_size,
            top_n=20,
        )
        assert result.rows_scored == n_rows == pq.ParquetFile(out).metadata.num_rows

    best: dict[str, tuple[float, float]] = {}

    def timed(name: str, run: Callable[[], None]) -> None:
        started, cpu_started = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        previous = best.get(name, (math.inf, math.inf))
        best[name] = (min(previous[0], wall), min(previous[1], cpu))

    timed("end_to_end", end_to_end)
    # Peak memory of scoring alone, before the ceiling's batches are held in memory.
    rss_mb = peak_rss_mb()

    encoded, n_encoded = encoded_batches(detector, data, batch_size, min(n_rows, CEILING_ROWS))
    # The bare forward runs in the chunks the scoring pass uses: its fastest way through.
    rows_per_chunk = chunk_rows(models, layout, "cpu")
    inputs = [torch.from_numpy(batch.inputs).split(rows_per_chunk) for batch in encoded]

    def scoring_pass() -> None:
        for batch in encoded:
            score_encoded(
                models, batch, layout, detector.kl_weight_, "cpu", numeric_dof=detector.numeric_dof
            )

    def bare_forward() -> None:
        with torch.inference_mode():
            for chunks in inputs:
                for x in chunks:
                    models[0](x, sample=False)

    for round_ in range(repeat):
        if round_:
            timed("end_to_end", end_to_end)
        timed("ceiling", scoring_pass)
        timed("bare_forward", bare_forward)
    return figures(best, rss_mb, n_rows, n_encoded)


def machine() -> dict:
    import torch

    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    parser.add_argument("--_measure", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._measure:  # the child process
        data, model_dir, out = map(Path, args._measure)
        print(json.dumps(measure(data, model_dir, out, args.batch_size, args.threads, args.repeat)))
        return 0

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        rows_list = sorted(args.rows)
        generate(root / "train.parquet", min(rows_list[0], ROW_GROUP), args.columns, seed=1)
        train(root / "train.parquet", root / "model", args.threads)
        results = []
        for n_rows in rows_list:
            data = root / f"data-{n_rows}.parquet"
            generate(data, n_rows, args.columns)
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--batch-size",
                    str(args.batch_size),
                    "--threads",
                    str(args.threads),
                    "--repeat",
                    str(args.repeat),
                    "--_measure",
                    str(data),
                    str(root / "model"),
                    str(root / "scores.parquet"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if child.returncode:
                sys.stderr.write(child.stderr)
                return child.returncode
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            for ceiling in ("ceiling", "bare_forward"):
                figures[f"ratio_to_{ceiling}"] = (
                    figures["end_to_end_rows_per_s"] / figures[f"{ceiling}_rows_per_s"]
                )
            results.append(figures)
            data.unlink()

    report = {
        "benchmark": "scoring",
        "columns": args.columns,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "machine": machine(),
        "results": results,
    }
    table = pd.DataFrame(results)[
        [
            "rows",
            "end_to_end_rows_per_s",
            "ceiling_rows_per_s",
            "ratio_to_ceiling",
            "bare_forward_rows_per_s",
            "ratio_to_bare_forward",
            "peak_rss_mb",
            "end_to_end_s",
            "model_share_of_cpu",
        ]
    ]
    cpu = report["machine"]
    print(
        f"scoring, {args.columns} numeric columns + id, batch {args.batch_size:,}, "
        f"{args.threads} threads, {cpu['cpu']} ({cpu['cores']} cores)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
