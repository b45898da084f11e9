"""Where a report's run lives: the MLflow run and model version, the Prefect flow run, the
files. The scoring flow fills a :class:`RunLinks`; the page and the artifacts link from it.

A link is made only where it can be followed: the MLflow UI only for a tracking server
reached over HTTP(S) (a sqlite store has no pages), the Prefect UI only when the flow run
has a UI address. Otherwise the identifiers are shown as text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

__all__ = ["RunLinks", "absolute_path", "http_base", "mlflow_tags"]


def http_base(uri: str | None) -> str | None:
    """``uri`` without a trailing slash when it is an HTTP(S) address, else ``None``."""
    if not uri or not uri.lower().startswith(("http://", "https://")):
        return None
    return uri.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class RunLinks:
    """Identity of a scoring run and the addresses of what belongs to it."""

    run_date: str | None = None
    #: The run's id in the run index (its folder under ``runs/``), when it has one.
    index_run_id: str | None = None
    mlflow_run_id: str | None = None
    mlflow_experiment_id: str | None = None
    tracking_uri: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_uri: str | None = None
    prefect_flow_run_id: str | None = None
    prefect_flow_run_url: str | None = None
    #: Absolute paths (or URIs) of the input and of the run's folder.
    input_path: str | None = None
    output_dir: str | None = None
    #: Files beside the report, by name relative to it (the page links to them).
    #: Absolute path of the report itself (the artifacts link to it).
    report_path: str | None = None
    flagged_file: str | None = None
    flagged_csv: str | None = None
    n_flagged_file_rows: int | None = None

    @property
    def mlflow_run_url(self) -> str | None:
        """The run's page; without the experiment id, the UI's address that finds it."""
        base = http_base(self.tracking_uri)
        if base is None or not self.mlflow_run_id:
            return None
        run = quote(self.mlflow_run_id, safe="")
        if not self.mlflow_experiment_id:
            return f"{base}/#/runs/{run}"
        return f"{base}/#/experiments/{quote(self.mlflow_experiment_id, safe='')}/runs/{run}"

    @property
    def model_version_url(self) -> str | None:
        base = http_base(self.tracking_uri)
        if base is None or not self.model_name or not self.model_version:
            return None
        return (
            f"{base}/#/models/{quote(self.model_name, safe='')}"
            f"/versions/{quote(self.model_version, safe='')}"
        )

    @property
    def prefect_url(self) -> str | None:
        """The flow run's page, when it is an HTTP(S) address."""
        return http_base(self.prefect_flow_run_url)


def mlflow_tags(links: RunLinks) -> dict[str, str]:
    """Tags for the MLflow scoring run that point at the report and the Prefect flow run."""
    tags = {
        "report_path": links.report_path,
        "run_folder": links.output_dir,
        "run_index_id": links.index_run_id,
        "prefect_flow_run_id": links.prefect_flow_run_id,
        "prefect_flow_run_url": links.prefect_url,
        "flagged_rows_file": links.flagged_file,
    }
    return {k: str(v) for k, v in tags.items() if v}


def absolute_path(path: str) -> str:
    """A local path made absolute (globs and hive folders too); URIs (``s3://``) as given."""
    if "://" in path:
        return path
    return str(Path(path).absolute())
