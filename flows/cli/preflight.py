"""What a flow command checks before Prefect and MLflow start: the inputs and the outputs.

A missing input folder used to be reported after the Prefect server, the flow run and
MLflow had started (about 24 s on a laptop), and then once per log line. These checks
run on the settings as the flow will use them (placeholders such as ``{date}`` filled in
for the run date, as the flow fills them in) and raise the errors the flow itself would
raise, each one line and exit code 2:

- every input path (training data, the labelled set, the scoring input) names Parquet
  data that can be opened: a file, a folder holding Parquet files, or a glob that matches;
- the scoring output folder is outside its input, and is a folder (or nothing yet) under
  a folder this user may write to.

Paths that are URIs (``s3://...``) are left to the flow: checking them needs credentials.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from flows.config import Settings
from vae_core.errors import OutputPathError


def _is_uri(path: str) -> bool:
    return "://" in path


def check_input(path: str) -> None:
    """Raise the reader's own ``InputError`` if ``path`` names no readable Parquet data."""
    if _is_uri(path):
        return
    from vae_core.parquet_files import open_dataset

    open_dataset(path)


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(".")


def check_output_folder(path: str) -> None:
    """Refuse an output folder that is a file or a special file, or cannot be created or
    written to, naming ``path``."""
    if _is_uri(path):
        return
    from vae_core.output_targets import check_directory_target

    target = check_directory_target(path)  # devices, pipes, a file above it
    if target.is_file():
        raise OutputPathError(
            f"{target} is a file; the scoring output is a folder. Choose another output path."
        )
    existing = _nearest_existing(target.absolute())
    if not stat.S_ISDIR(os.stat(existing).st_mode):
        return  # a broken link: check_directory_target's parent check names it
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == target.absolute() else f" ({existing} is not writable)"
        raise OutputPathError(f"{target}: cannot write here (permission denied){where}.")


def check_train(settings: Settings) -> None:
    """The training data (and labelled set) of the run, dated as the flow dates them."""
    from flows.publishing.run_dates import dated_train, run_date

    cfg = dated_train(settings.train, run_date(settings.train.run_date))
    check_input(cfg.data_path)
    if cfg.evaluation is not None:
        check_input(cfg.evaluation.path)


def check_score(settings: Settings) -> None:
    """The scoring input and the output root of the run, dated as the flow dates them."""
    from flows.publishing.locations import check_output_outside_input
    from flows.publishing.run_dates import dated_score, new_run_id, run_date

    cfg = dated_score(settings.score, run_date(settings.score.run_date), new_run_id())
    check_output_outside_input(cfg.input_path, cfg.output_dir)
    check_input(cfg.input_path)
    check_output_folder(cfg.output_dir)


def check_serve(settings: Settings) -> None:
    """The output root of the scheduled scoring runs: its inputs may not exist yet."""
    from flows.publishing.locations import check_output_outside_input
    from flows.publishing.run_dates import dated_score, new_run_id, run_date

    cfg = dated_score(settings.score, run_date(settings.score.run_date), new_run_id())
    check_output_outside_input(cfg.input_path, cfg.output_dir)
    check_output_folder(cfg.output_dir)


def check_dask_cluster(settings: Settings, api_configured: bool) -> None:
    """An existing Dask cluster needs a Prefect API its workers can reach: the server a
    command starts for itself listens on 127.0.0.1 of this machine only."""
    from flows.config import ConfigError

    train = settings.train  # its cluster only samples, with max_train_rows
    uses = {
        "train": train.max_train_rows is not None and train.task_runner == "dask",
        "score": settings.score.task_runner == "dask",
    }
    for key, section in (("train", train), ("score", settings.score)):
        address = section.dask_address
        if address and uses[key] and not api_configured:
            raise ConfigError(
                f"{key}.dask_address={address!r}: the cluster's workers report their task "
                "runs to the Prefect API, and without PREFECT_API_URL this command runs a "
                "server that only this machine can reach. Set PREFECT_API_URL (here and on "
                "the workers) to a Prefect server both can reach."
            )
