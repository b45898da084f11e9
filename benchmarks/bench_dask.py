"""The scoring flow on Dask: rows/s with 1, 2 and 4 worker processes against in-process.

Generates ``--files`` Parquet files, trains and registers a model in a throwaway MLflow
store, then runs the real scoring flow (Prefect, MLflow run, report, manifest) on the same
data: once in-process (``task_runner: local``, one partition at a time, one torch thread),
then on a local Dask cluster of 1, 2 and 4 single-threaded worker processes, started before
the clock starts. Each Dask run is timed cold (workers load the model) and warm (model
cached in the workers). Outputs are checked equal to the in-process run's.

    python benchmarks/bench_dask.py                       # 8 files x 250,000 rows
    python benchmarks/bench_dask.py --files 4 --rows-per-file 2000 --workers 1 2  # quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

# Quiet and offline, set before Prefect and MLflow are imported.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import distributed  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from bench_scoring import generate, machine  # noqa: E402
from prefect.server.api.server import SubprocessASGIServer  # noqa: E402
from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: E402

from flows.config import load_settings  # noqa: E402
from flows.score_flow import score_flow  # noqa: E402
from flows.train_flow import train_flow  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rows-per-file", type=int, default=250_000)
    parser.add_argument("--columns", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    # One torch thread in-process, as in each single-threaded Dask worker: the comparison
    # is then about the runner, not about thread counts.
    torch.set_num_threads(1)
    # One Prefect server for the flow and every worker (they inherit the variable), as a
    # deployment would have; without it each worker process would start its own.
    with contextlib.ExitStack() as stack:
        if not PREFECT_API_URL.value():
            server = SubprocessASGIServer()
            server.start(timeout=120)
            stack.callback(server.stop)
            os.environ["PREFECT_API_URL"] = server.api_url  # for the worker processes
            stack.enter_context(temporary_settings({PREFECT_API_URL: server.api_url}))
        report = measure(args)
    print(
        f"scoring flow, {report['rows']:,} rows in {args.files} files x {args.columns} "
        f"columns; {report['machine']['cpu']} ({report['machine']['cores']} cores)"
    )
    print(
        pd.DataFrame(report["results"]).to_string(index=False, float_format=lambda v: f"{v:,.2f}")
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def measure(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "train.parquet", 20_000, args.columns, seed=1)
        (root / "data").mkdir()
        for number in range(args.files):
            generate(
                root / "data" / f"part-{number:03d}.parquet",
                args.rows_per_file,
                args.columns,
                seed=100 + number,
            )
        n_rows = args.files * args.rows_per_file

        def settings(out: str, **score):
            return load_settings(
                files=[],
                environ={},
                overrides={
                    "tracking": {
                        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                        "registered_model": "bench",
                    },
                    "train": {
                        "data_path": str(root / "train.parquet"),
                        "key_columns": ["id"],
                        "detector": {"max_epochs": 10, "random_state": 0},
                    },
                    "score": {
                        "input_path": str(root / "data"),
                        "output_dir": str(root / out),
                        "model_uri": "models:/bench@champion",
                        "top_n": 20,
                        **score,
                    },
                },
            )

        train_flow(settings("unused"))
        rows = []
        started = time.perf_counter()
        local = score_flow(settings("local", concurrency=1))
        local_s = time.perf_counter() - started
        expected = pd.read_parquet(local.scores_path)
        rows.append(
            {
                "runner": "in-process",
                "workers": 1,
                "cold_s": local_s,
                "warm_s": local_s,
                "rows_per_s": n_rows / local_s,
                "vs_in_process": 1.0,
            }
        )
        for n_workers in args.workers:
            with distributed.LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster:
                times = []
                for run in ("cold", "warm"):
                    out = f"dask-{n_workers}-{run}"
                    started = time.perf_counter()
                    outcome = score_flow(
                        settings(out, task_runner="dask", dask_address=cluster.scheduler_address)
                    )
                    times.append(time.perf_counter() - started)
                    got = pd.read_parquet(outcome.scores_path)
                    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-4)
            rows.append(
                {
                    "runner": "dask",
                    "workers": n_workers,
                    "cold_s": times[0],
                    "warm_s": times[1],
                    "rows_per_s": n_rows / times[1],
                    "vs_in_process": local_s / times[1],
                }
            )
    return {
        "benchmark": "dask",
        "rows": n_rows,
        "files": args.files,
        "columns": args.columns,
        "machine": machine(),
        "results": rows,
    }


if __name__ == "__main__":
    raise SystemExit(main())
