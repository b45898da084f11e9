"""Running the command line in the test's process, with the settings as a config file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

from flows import cli
from flows.config import Settings

MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def write_config(path: Path, settings: Settings) -> Path:
    """The settings as a YAML file, for the flow commands' ``--config``."""
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return path


def main_in_process(argv: Iterable[str | Path]) -> int:
    """``vae-anomaly --threads 1 ARGV`` in this process; its exit code."""
    # mlflow.set_tracking_uri (called by every flow) exports MLFLOW_TRACKING_URI, which
    # outranks a config file: an earlier test's store must not win over this --config.
    saved = {name: os.environ.pop(name) for name in MLFLOW_URI_VARIABLES if name in os.environ}
    try:
        return cli.main(["--threads", "1", *map(str, argv)])
    finally:
        os.environ.update(saved)


def run_cli(capfd: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Run the command line in this process; capture at the file-descriptor level, where
    Prefect's console logging writes too."""
    code = main_in_process(argv)
    captured = capfd.readouterr()
    return code, captured.out, captured.err
