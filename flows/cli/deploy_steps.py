"""Steps of ``prefect.yaml``: where a deployment's run works, and the values it cannot run
without.

Prefect runs a deployment's ``build`` steps once, when ``prefect deploy`` registers it, and
its ``pull`` steps at the start of every run, in the process that runs the flow, before the
flow's code is loaded. Both kinds are plain functions named by their import path; these
import nothing beyond the standard library, so a failing one costs no time.

- ``set_working_directory``: ``{{ $VAE_ANOMALY_WORKDIR }}`` in ``prefect.yaml`` is filled in
  by ``prefect deploy`` when the variable is set there (a checkout: the checkout's path),
  else by the run's environment, else left empty; empty means the image's ``/app``.
- ``require_at_deploy`` / ``require_at_run``: a value a run needs (the tracking URI, the
  data paths) unset or empty stops the deploy, or the run at its start, with one line
  naming it. A run
  without ``MLFLOW_TRACKING_URI`` would otherwise fall back to a sqlite file in whatever
  directory the worker runs in, and register its model where nobody looks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

#: The image's working directory (docker/Dockerfile): configs/ and flows/ are there.
IMAGE_WORKDIR = "/app"
WORKDIR_VARIABLE = "VAE_ANOMALY_WORKDIR"


class DeploymentSetupError(RuntimeError):
    """A deployment cannot run here as configured; the message says what to set."""


def set_working_directory(directory: str = "", default: str = IMAGE_WORKDIR) -> dict[str, str]:
    """Change into ``directory`` (``default`` when empty) and return it as the step output."""
    path = directory.strip() or default
    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise DeploymentSetupError(
            f"working directory {path} {what} on this worker; set {WORKDIR_VARIABLE} to the "
            "folder holding flows/ and configs/ (a checkout's root) when deploying, or in "
            "the worker's environment"
        )
    os.chdir(path)
    return {"directory": path}


def missing_variables(names: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """The names in ``names`` that the environment leaves unset or empty."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    return [name for name in names if not env.get(name, "").strip()]


def _missing_message(names: Sequence[str], deployment: str, where: str) -> str | None:
    missing = missing_variables(names)
    if not missing:
        return None
    return (
        f"{', '.join(missing)} must be set for deployment {deployment} (unset or empty in "
        f"the environment of {where}); export {'them' if len(missing) > 1 else 'it'} "
        "and try again"
    )


def require_at_deploy(names: Sequence[str], deployment: str) -> dict[str, str]:
    """A build step: stop ``prefect deploy`` with one ``error:`` line if a value is unset.

    ``SystemExit`` rather than an exception, because ``prefect deploy`` prints a screen of
    traceback for an exception and lets ``SystemExit`` through as it is.
    """
    message = _missing_message(names, deployment, "prefect deploy")
    if message:
        raise SystemExit(f"error: {message}")
    return {}


def require_at_run(names: Sequence[str], deployment: str) -> dict[str, str]:
    """A pull step: fail the flow run at its start if a value is unset, saying why in the
    run's logs (the exception itself reaches only the worker's terminal)."""
    message = _missing_message(names, deployment, "this flow run")
    if message:
        _log_to_flow_run(message)
        raise DeploymentSetupError(message)
    return {}


def _log_to_flow_run(message: str) -> None:
    """One error record in the logs of the run this process prepares (its UI page).

    Prefect's flow run logger sends records that name their flow run to the API; the
    worker names the run in ``PREFECT__FLOW_RUN_ID`` of the process it starts.
    """
    run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if run_id:
        logging.getLogger("prefect.flow_runs").error(message, extra={"flow_run_id": run_id})
