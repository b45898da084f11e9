"""Where partition tasks run: a thread pool in the flow's process, or a Dask cluster.

Both are Prefect task runners, so the flows submit work the same way either way. With Dask,
tasks run in other processes (or machines): they get a ``ModelRef`` instead of a loaded
detector, and each worker process downloads and loads the model once (``worker_detector``).
Nothing is unpickled as a model: the worker reads the registered safetensors + JSON
directory through MLflow, like any other consumer.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.mlops import tracking
from vae_core.errors import InputError
from vae_core.streaming import Detector

RunnerKind = Literal["local", "dask"]


class TaskRunnerError(InputError):
    """The configured task runner cannot be built (missing extra, bad address)."""


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load the exact model version the flow resolved."""

    name: str
    version: str
    uri: str  # pinned: models:/<name>/<version>
    tracking_uri: str
    registry_uri: str


def make_task_runner(kind: RunnerKind, workers: int, address: str | None) -> TaskRunner[Any]:
    """A thread pool of ``workers`` threads, or a Dask runner.

    For Dask: connect to the scheduler at ``address`` (``tcp://host:8786``), or start a
    local cluster of ``workers`` single-threaded worker processes for the run.
    """
    if kind == "local":
        return ThreadPoolTaskRunner(max_workers=workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:
        raise TaskRunnerError(
            "task_runner=dask needs the dask extra: pip install 'vae-anomaly[dask]'."
        ) from exc
    api_url, configured = prefect_api_url()
    if address:
        if not address.startswith(("tcp://", "tls://", "inproc://", "ws://", "wss://")):
            raise TaskRunnerError(
                f"dask_address={address!r} is not a scheduler address; use the form "
                "tcp://host:8786."
            )
        if not configured:
            raise TaskRunnerError(
                f"dask_address={address!r}: the cluster's workers report their task runs "
                "to the Prefect API, and this run uses a temporary one that only this "
                "machine can reach. Set PREFECT_API_URL (here and on the workers) to a "
                "Prefect server both can reach."
            )
        return DaskTaskRunner(address=address)
    # One thread per worker process: torch already uses the cores it is given, and
    # processes sidestep the GIL for the pandas parts of scoring. The workers are told
    # where this run's Prefect API is: without it each would start a server of its own.
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": ":0",  # any free port: several runs may share a machine
            "env": {"PREFECT_API_URL": api_url} if api_url else {},
        }
    )


def prefect_api_url() -> tuple[str | None, bool]:
    """The Prefect API this run talks to, and whether it was configured (not temporary)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured), True
    with get_client(sync_client=True) as client:  # the temporary server of this process
        return str(client.api_url).rstrip("/"), False


def model_ref(
    resolved: tracking.ResolvedModel, tracking_uri: str, registry_uri: str | None
) -> ModelRef:
    """A reference other processes can load from; relative sqlite paths made absolute."""

    def absolute(uri: str) -> str:
        db = tracking.sqlite_path(uri)
        return uri if db is None else f"sqlite:///{db.expanduser().absolute()}"

    return ModelRef(
        resolved.name,
        str(resolved.version),
        resolved.uri,
        absolute(tracking_uri),
        absolute(registry_uri or tracking_uri),
    )


@contextlib.contextmanager
def threads_per_task(concurrency: int) -> Iterator[None]:
    """Share the cores between ``concurrency`` tasks in this process, then restore.

    torch's thread pool is process-wide: with several partitions scored at once, each
    using every core, the threads would fight over the cores and spin-wait.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) // max(concurrency, 1))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=4)
def worker_detector(ref: ModelRef) -> Detector:
    """The model of ``ref``, loaded once per worker process and reused by its tasks.

    A Dask worker process runs one task at a time and its neighbours share the machine:
    one torch thread each, parallelism comes from the processes.
    """
    torch.set_num_threads(1)
    tracking.configure_tracking(ref.tracking_uri, ref.registry_uri)
    resolved = tracking.ResolvedModel(uri=ref.uri, name=ref.name, version=ref.version, run_id=None)
    return tracking.load_detector(resolved)
