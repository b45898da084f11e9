"""CLI commands that run the Prefect flows: train, score, demo, serve, config-schema.

Registered into ``flows.cli.COMMANDS`` on import. The settings, the flows, Prefect and MLflow
are imported inside the commands, so ``vae-anomaly --help`` and the library commands stay
fast, and importing this module changes nothing (no environment variable, no logging).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.cli.registry import EXIT_OK, command, positive_int, set_torch_threads

if TYPE_CHECKING:
    from flows.config import Settings

#: Prefect settings for running the flows locally, unless the environment sets them.
LOCAL_PREFECT_DEFAULTS = {
    # The flows run offline by default (Prefect's ephemeral server on a laptop or in CI):
    # its telemetry would only print connection errors.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # The temporary server gets 20 s to start by default; a laptop busy with other work (or
    # a CI runner with 2 cores) can need more, and failing the job for it helps nobody.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def use_local_prefect_defaults() -> None:
    """Apply ``LOCAL_PREFECT_DEFAULTS`` where the environment has no value of its own.

    Call it before the first import of Prefect: Prefect reads its settings from the
    environment once, when it is imported (the ephemeral server's subprocess inherits the
    environment when it starts). A deployment that sets a variable keeps its value.
    """
    for name, value in LOCAL_PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


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
    from flows.config import load_settings

    if args.tracking_uri:
        overrides = {**overrides, "tracking": {"tracking_uri": args.tracking_uri}}
    return load_settings(args.config_files, job=job, overrides=overrides)


def _section(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _run_date(text: str) -> str:
    from datetime import date

    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, not {text!r}") from None


def _add_date(parser: argparse.ArgumentParser, job: str) -> None:
    parser.add_argument(
        "--date",
        type=_run_date,
        metavar="YYYY-MM-DD",
        help=f"the run date, for {{date}} in paths{' and the lookback' if job == 'train' else ''} "
        f"(overrides {job}.run_date; default the scheduled time of the flow run, else today, "
        "UTC).",
    )


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
    _add_date(parser, "train")


@command("train", "run the training flow: fit, log to MLflow, register, promote", _configure_train)
def run_train(args: argparse.Namespace) -> int:
    use_local_prefect_defaults()
    from flows.cli import preflight
    from flows.cli.flow_session import flow_session
    from flows.cli.local_server import configured_api_url

    overrides: dict[str, Any] = {"train": _section({"data_path": args.data, "run_date": args.date})}
    if args.epochs:
        overrides["train"]["detector"] = {"max_epochs": args.epochs}
    if args.model_name:
        overrides["tracking"] = {"registered_model": args.model_name}
    settings = _settings(args, "train", overrides)
    preflight.check_train(settings)  # before Prefect and MLflow start
    preflight.check_dask_cluster(settings, configured_api_url() is not None)
    with flow_session(args.debug) as session:
        from flows.train_flow import train_flow

        session.ready()
        outcome = train_flow(settings)
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
    _add_date(parser, "score")


@command(
    "score", "run the scoring flow: champion model, scores, quarantine, report", _configure_score
)
def run_score(args: argparse.Namespace) -> int:
    use_local_prefect_defaults()
    from flows.cli import preflight
    from flows.cli.flow_session import flow_session
    from flows.cli.local_server import configured_api_url

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
                "run_date": args.date,
            }
        )
    }
    settings = _settings(args, "score", overrides)
    preflight.check_score(settings)  # before Prefect and MLflow start
    preflight.check_dask_cluster(settings, configured_api_url() is not None)
    with flow_session(args.debug) as session:
        from flows.score_flow import score_flow

        session.ready()
        outcome = score_flow(settings)
    for note in outcome.notes:
        print(f"warning: {note}", file=sys.stderr)
    print(score_summary(outcome))
    return EXIT_OK


def score_summary(outcome: Any) -> str:
    """What an operator needs from a scoring run: the rows, the flags, where to look."""
    lines = [
        f"{outcome.rows_in:,} rows in: {outcome.rows_scored:,} scored, "
        f"{outcome.rows_quarantined:,} quarantined, {outcome.n_flagged:,} flagged",
        f"report: {outcome.report_path}",
        f"scores: {outcome.scores_path}",
    ]
    if outcome.quarantine_path:
        lines.append(f"quarantine: {outcome.quarantine_path}")
    return "\n".join(lines)


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
    use_local_prefect_defaults()
    from flows.cli.flow_session import flow_session

    with flow_session(args.debug) as session:
        from flows import demo

        if args.threads is None:
            # The demo's network is small: extra threads only add synchronisation, and on
            # busy cores they can make training ten times slower.
            set_torch_threads(1)
        session.ready()
        return demo.run(args.workdir, args.seed)


# -- serve -------------------------------------------------------------------------------
#: The deployments ``serve`` creates: names of its own, so that a server's other
#: deployments (``vae-train/retrain``, ``vae-score/score`` of prefect.yaml) are never
#: touched, and on Ctrl-C only these are paused.
SERVE_DEPLOYMENTS = {"train": "serve-retrain", "score": "serve-score"}


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    _add_config(parser)
    for job, flow, cron, every in (
        ("retrain", "training", "0 3 * * 1", "weekly"),
        ("score", "scoring", "0 5 * * *", "daily"),
    ):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            f"--{job}-cron",
            default=cron,
            help=f"cron (UTC) of the {flow} flow. Default: %(default)s ({every}).",
        )
        group.add_argument(
            f"--{job}-every",
            type=positive_int,
            metavar="SECONDS",
            help=f"run the {flow} flow every SECONDS instead of on the cron.",
        )

    parser.add_argument(
        "--limit",
        type=positive_int,
        help="flow runs this process runs at the same time (default: no limit); a run due "
        "while the limit is reached waits.",
    )


def _schedule(cron: str, every: int | None) -> dict[str, Any]:
    from datetime import timedelta

    return {"interval": timedelta(seconds=every)} if every else {"cron": cron}


@command(
    "serve",
    "run both flows on their schedules in this process, as its own deployments "
    "(vae-train/serve-retrain, vae-score/serve-score)",
    _configure_serve,
)
def run_serve(args: argparse.Namespace) -> int:
    use_local_prefect_defaults()
    from flows.cli import preflight
    from flows.cli.flow_session import flow_session

    train_settings = _settings(args, "train", {})
    score_settings = _settings(args, "score", {})
    # The inputs of later runs may not exist yet (tomorrow's folder); the output may.
    preflight.check_serve(score_settings)
    with flow_session(args.debug, services=True) as session:
        from prefect import serve

        from flows.score_flow import score_flow
        from flows.train_flow import train_flow

        session.ready()
        if session.server is not None:
            url = session.server.url
            print(
                f"serving on a local Prefect server at {url} (UI {url.removesuffix('/api')}), "
                "which stops with this command (set PREFECT_API_URL to use another)",
                file=sys.stderr,
            )
        serve(
            train_flow.to_deployment(
                name=SERVE_DEPLOYMENTS["train"],
                parameters={"settings": train_settings.model_dump(mode="json")},
                **_schedule(args.retrain_cron, args.retrain_every),
            ),
            score_flow.to_deployment(
                name=SERVE_DEPLOYMENTS["score"],
                parameters={"settings": score_settings.model_dump(mode="json")},
                **_schedule(args.score_cron, args.score_every),
            ),
            pause_on_shutdown=True,  # only these two: the others are not this process's
            limit=args.limit,
        )
    return EXIT_OK


# -- config-schema -----------------------------------------------------------------------
def _configure_schema(parser: argparse.ArgumentParser) -> None:
    del parser


@command("config-schema", "print the JSON schema of the configuration files", _configure_schema)
def run_config_schema(args: argparse.Namespace) -> int:
    import json

    from flows.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK
