"""CLI commands that run the Prefect flows: train, score, demo, serve, config-schema.

Registered into ``flows.cli.COMMANDS`` on import. Prefect and MLflow are imported inside the
commands, so ``vae-anomaly --help`` and the library commands stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.cli.app import EXIT_OK, command, positive_int
from flows.config import Settings, json_schema, load_settings

# The flows run offline by default (Prefect's ephemeral server on a laptop or in CI): its
# telemetry would only print connection errors. A deployment can set the variable itself.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# The temporary server gets 20 s to start by default; a laptop busy with other work (or a
# CI runner with 2 cores) can need more, and failing the job for it helps nobody.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        dest="config_files",
        action="append",
        type=Path,
        metavar="FILE",
        help="YAML file(s) to read instead of configs/base.yaml + the job's file + "
        "configs/local.yaml; repeat to layer several, later wins.",
    )
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default from the config: sqlite:///mlflow.db). "
        "Env: VAE_ANOMALY_TRACKING_URI or MLFLOW_TRACKING_URI.",
    )


def _settings(args: argparse.Namespace, job: str, overrides: dict[str, Any]) -> Settings:
    if args.tracking_uri:
        overrides = {**overrides, "tracking": {"tracking_uri": args.tracking_uri}}
    return load_settings(args.config_files, job=job, overrides=overrides)


def _section(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class _WithoutTraceback(logging.Formatter):
    """Formats a record as ``inner`` would, minus any traceback or stack."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _console_handlers() -> list[logging.Handler]:
    """Stream handlers of the root and the ``prefect`` loggers (the terminal, not the API)."""
    loggers = [logging.getLogger()] + [
        logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("prefect") and isinstance(logger, logging.Logger)
    ]
    handlers = {
        id(h): h for lg in loggers for h in lg.handlers if isinstance(h, logging.StreamHandler)
    }
    return list(handlers.values())


@contextlib.contextmanager
def console_tracebacks(shown: bool) -> Iterator[None]:
    """Keep Prefect's failure logs on the terminal to one line each unless ``shown``.

    Prefect logs every failed task and flow with its full traceback. For a bad input the
    command's own ``error: ...`` line says all there is to say, and a screen of engine
    frames buries it; ``--debug`` shows them. Only the terminal handlers change: the logs
    sent to the Prefect API (and its UI) keep their tracebacks.
    """
    if shown:
        yield
        return
    changed = [(handler, handler.formatter) for handler in _console_handlers()]
    for handler, formatter in changed:
        handler.setFormatter(_WithoutTraceback(formatter))
    try:
        yield
    finally:
        for handler, formatter in changed:
            handler.setFormatter(formatter)


# -- train -------------------------------------------------------------------------------
def _configure_train(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument(
        "--data", help="Parquet file, directory or glob to train on (overrides train.data_path)."
    )
    parser.add_argument(
        "--model-name", help="registered model name (overrides tracking.registered_model)."
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        help="upper bound on epochs (overrides train.detector.max_epochs).",
    )


@command("train", "run the training flow: fit, log to MLflow, register, promote", _configure_train)
def run_train(args: argparse.Namespace) -> int:
    from flows.train_flow import train_flow

    overrides: dict[str, Any] = {"train": _section({"data_path": args.data})}
    if args.epochs:
        overrides["train"]["detector"] = {"max_epochs": args.epochs}
    if args.model_name:
        overrides["tracking"] = {"registered_model": args.model_name}
    with console_tracebacks(args.debug):
        outcome = train_flow(_settings(args, "train", overrides))
    print(
        f"registered {outcome.model_name} version {outcome.version} as {outcome.alias}: "
        f"{outcome.reason}"
    )
    return EXIT_OK


# -- score -------------------------------------------------------------------------------
def _configure_score(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument(
        "--input", help="Parquet file, directory or glob to score (overrides score.input_path)."
    )
    parser.add_argument(
        "--output-dir",
        help="directory for scores.parquet, "
        "quarantine.parquet and report.html (overrides score.output_dir).",
    )
    parser.add_argument(
        "--model-uri",
        help="models:/<name>@<alias> or models:/<name>/<version> "
        "(overrides score.model_uri; default the champion).",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        help="rows per record batch (overrides score.batch_size).",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        help="partitions scored at the same time: threads, or the worker "
        "processes of a local Dask cluster (overrides score.concurrency).",
    )
    parser.add_argument(
        "--partition-rows",
        type=positive_int,
        help="split files larger than this many rows into row-group "
        "partitions (overrides score.partition_rows).",
    )
    parser.add_argument(
        "--task-runner",
        choices=("local", "dask"),
        help="where partitions run: local threads, or Dask worker processes "
        "(overrides score.task_runner).",
    )
    parser.add_argument(
        "--dask-address",
        metavar="tcp://HOST:8786",
        help="score on this existing Dask cluster (implies --task-runner "
        "dask; overrides score.dask_address).",
    )


@command(
    "score", "run the scoring flow: champion model, scores, quarantine, report", _configure_score
)
def run_score(args: argparse.Namespace) -> int:
    from flows.score_flow import score_flow

    overrides = {
        "score": _section(
            {
                "input_path": args.input,
                "output_dir": args.output_dir,
                "model_uri": args.model_uri,
                "batch_size": args.batch_size,
                "concurrency": args.concurrency,
                "partition_rows": args.partition_rows,
                "task_runner": "dask" if args.dask_address else args.task_runner,
                "dask_address": args.dask_address,
            }
        )
    }
    with console_tracebacks(args.debug):
        outcome = score_flow(_settings(args, "score", overrides))
    print(f"scores: {outcome.scores_path}\nreport: {outcome.report_path}")
    for note in outcome.notes:
        print(f"warning: {note}", file=sys.stderr)
    if outcome.quarantine_path:
        print(f"quarantine: {outcome.quarantine_path}")
    return EXIT_OK


# -- demo --------------------------------------------------------------------------------
def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("demo_output"),
        help="directory for data, MLflow store, scores and report. Default: %(default)s.",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data and model.")


@command(
    "demo", "generate data, then run the training and scoring flows end to end", _configure_demo
)
def run_demo(args: argparse.Namespace) -> int:
    import torch

    from flows import demo

    if args.threads is None:
        # The demo's network is small: extra threads only add synchronisation, and on busy
        # cores they can make training ten times slower.
        torch.set_num_threads(1)
    return demo.run(args.workdir, args.seed)


# -- serve -------------------------------------------------------------------------------
def _configure_serve(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    parser.add_argument(
        "--retrain-cron",
        default="0 3 * * 1",
        help="cron of the retraining flow. Default: %(default)s (weekly).",
    )
    parser.add_argument(
        "--score-cron",
        default="0 5 * * *",
        help="cron of the scoring flow. Default: %(default)s (daily).",
    )


@command(
    "serve", "run both flows on their schedules in this process (no work pool)", _configure_serve
)
def run_serve(args: argparse.Namespace) -> int:
    from prefect import serve

    from flows.score_flow import score_flow
    from flows.train_flow import train_flow

    train_settings = _settings(args, "train", {})
    score_settings = _settings(args, "score", {})
    serve(
        train_flow.to_deployment(
            name="retrain",
            cron=args.retrain_cron,
            parameters={"settings": train_settings.model_dump(mode="json")},
        ),
        score_flow.to_deployment(
            name="score",
            cron=args.score_cron,
            parameters={"settings": score_settings.model_dump(mode="json")},
        ),
    )
    return EXIT_OK


# -- config-schema -----------------------------------------------------------------------
def _configure_schema(parser: argparse.ArgumentParser) -> None:
    del parser


@command("config-schema", "print the JSON schema of the configuration files", _configure_schema)
def run_config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK
