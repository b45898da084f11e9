"""Integration fixtures: throwaway MLflow sqlite stores and one shared Prefect server.

Creating a sqlite store runs MLflow's schema migrations (seconds), so one empty template
store is built per session and each test gets a byte copy of it (``mlflow_store`` for a
test's ``tmp_path``, ``mlflow_store_factory`` for any folder, at any fixture scope).
Starting Prefect's temporary server takes 10-20 s, so the session shares one
(``prefect_server``). MLflow's process-global tracking/registry URIs (module globals and
``MLFLOW_*_URI`` environment variables, which ``mlflow.set_tracking_uri`` and therefore the
flows set) are restored after every test module, so no store leaks into later tests.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Quiet, offline MLflow for every integration test (and the subprocesses they start).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
for _name in ("mlflow", "alembic"):  # in case mlflow was imported before this file
    logging.getLogger(_name).setLevel(logging.WARNING)

MLFLOW_URI_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
)
PREFECT_STARTUP_TIMEOUT_S = 90
#: Seconds the session's template store took to create (reported by the timing test).
STORE_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def mlflow_template_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, fully migrated MLflow sqlite database; copy it, never write to it."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # MLflow resolves its default artifact root against the cwd
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    STORE_TIMINGS["template_store_s"] = time.perf_counter() - started
    return db


@pytest.fixture(scope="session")
def mlflow_store_factory(mlflow_template_store: Path) -> Callable[[Path], str]:
    """``factory(folder) -> tracking URI`` of a fresh store at ``folder/mlflow.db``.

    Session-scoped so module-scoped fixtures can use it; it only copies a file and points
    nothing at the store (the flows call ``configure_tracking`` themselves).
    """

    def make(folder: Path) -> str:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "mlflow.db"
        shutil.copyfile(mlflow_template_store, db)
        return f"sqlite:///{db}"

    return make


@pytest.fixture(scope="session")
def mlflow_store_timings(mlflow_template_store: Path) -> dict[str, float]:
    """How long the session's template store took to create, for reporting."""
    return STORE_TIMINGS


def _remember_mlflow_uris(patch: pytest.MonkeyPatch) -> None:
    """Make ``patch``'s undo restore MLflow's global URIs and the variables it sets."""
    import mlflow.tracking._model_registry.utils as registry_utils
    import mlflow.tracking._tracking_service.utils as tracking_utils

    patch.setattr(tracking_utils, "_tracking_uri", tracking_utils._tracking_uri)
    patch.setattr(registry_utils, "_registry_uri", registry_utils._registry_uri)
    for name in MLFLOW_URI_VARIABLES:
        if name in os.environ:
            patch.setenv(name, os.environ[name])
        else:
            patch.delenv(name, raising=False)


@pytest.fixture(scope="module", autouse=True)
def _isolate_mlflow_uris() -> Iterator[None]:
    """Autouse, module scope: set up before (and undone after) the module's own fixtures."""
    with pytest.MonkeyPatch.context() as patch:
        _remember_mlflow_uris(patch)
        yield


@pytest.fixture
def mlflow_store(
    mlflow_store_factory: Callable[[Path], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh store in ``tmp_path``; MLflow points at it and the cwd is ``tmp_path``.

    Yields the tracking URI; MLflow's global URIs are restored after the test.
    """
    import mlflow

    uri = mlflow_store_factory(tmp_path)
    monkeypatch.chdir(tmp_path)
    _remember_mlflow_uris(monkeypatch)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield uri


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server (sqlite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=PREFECT_STARTUP_TIMEOUT_S):
        yield
