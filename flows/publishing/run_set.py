"""A scoring run published as one set: its own folder, a manifest, the ``latest`` pointer.

Layout under an output root::

    <root>/runs/<run_id>/      one complete run: scores.parquet, quarantine.parquet (when
                               rows were quarantined), report.html, flagged.parquet,
                               manifest.json (written last: every file, size, sha256)
    <root>/latest.json         {"run_id", "run_date", "path": "runs/<run_id>"}
    <root>/run_index.parquet   one row per completed run (``flows.publishing.run_index``)
    <root>/.run-set.lock       held while latest.json and the index are replaced

A run writes into a hidden staging folder, ``runs/.staging-<host>.<pid>.<run_id>``, which
is renamed into place only once the manifest is written: a folder under ``runs/`` without
a leading dot is always complete. Then, under the lock, the index row is appended and
``latest.json`` is replaced atomically. A run killed at any point leaves ``latest`` on the
previous complete set; two runs into one root write into different folders and take turns
at the lock, so their files never mix.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from flows.pipeline.locks import exclusive_lock
from flows.pipeline.writers import write_bytes_atomic, writer_tag
from flows.publishing import retention, run_index
from vae_core.errors import OutputPathError
from vae_core.output_targets import check_directory_target, fsync_directory, writing_to

RUNS_DIR, LATEST_FILE, LOCK_FILE = "runs", "latest.json", ".run-set.lock"
MANIFEST_FILE = "manifest.json"
#: The files of a scoring run's folder besides the manifest (the report adds its own).
SCORES_FILE, QUARANTINE_FILE, REPORT_FILE = "scores.parquet", "quarantine.parquet", "report.html"
#: Seconds a run waits for another run's turn at the lock before it fails.
LOCK_TIMEOUT_S = 300.0
_HASH_CHUNK = 1 << 20


class RunSetError(RuntimeError):
    """A run folder is not the complete, consistent set its manifest describes."""


@dataclass(frozen=True)
class Latest:
    """What ``latest.json`` says: the newest complete run."""

    run_id: str
    run_date: date
    path: str  # relative to the root: runs/<run_id>


@dataclass(frozen=True)
class Published:
    """Where a run was published and what publishing it changed."""

    run_dir: Path
    is_latest: bool
    removed: tuple[Path, ...] = field(default=())


def runs_dir(root: Path | str) -> Path:
    return Path(root) / RUNS_DIR


def root_lock(root: Path | str, timeout_s: float = LOCK_TIMEOUT_S) -> AbstractContextManager[None]:
    """Hold the output root's lock (``fcntl.flock`` on ``<root>/.run-set.lock``).

    The kernel releases it when the holder dies, so a killed run never leaves it held.
    """
    path = Path(root) / LOCK_FILE
    return exclusive_lock(
        path,
        timeout_s,
        lambda: TimeoutError(
            f"{path}: another run has held this lock for more than {timeout_s:g} s; "
            "check for a hung scoring run"
        ),
    )


def check_output_root(root: Path | str) -> Path:
    """Refuse an output root that is a file or a device (or lies below a file): an
    ``OutputPathError`` naming it (exit code 2). Cheap: call it before a run starts."""
    root = check_directory_target(root)
    if root.is_file():
        raise OutputPathError(
            f"{root} is a file; the scoring output is a folder. Choose another output path."
        )
    return root


def begin_run(root: Path | str, run_id: str) -> Path:
    """Create this run's hidden staging folder; remove those of runs that died.

    An output root that ``check_output_root`` refuses, or where this user cannot write, is
    an ``OutputPathError`` naming the root (exit code 2), not a raw ``OSError``.
    """
    root = check_output_root(root)
    runs = runs_dir(root)
    staging = runs / f"{retention.STAGING_PREFIX}{writer_tag()}.{run_id}"
    with writing_to(root):
        runs.mkdir(parents=True, exist_ok=True)
        retention.remove_abandoned(runs)
        staging.mkdir()
    return staging


def discard_run(staging: Path) -> None:
    """Remove a run's staging folder after a failure: nothing of it is published."""
    retention.remove_tree(staging)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file of ``folder`` but the manifest: ``{name: {"size", "sha256"}}``, sorted."""
    entries: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_dir() or name == MANIFEST_FILE:
            continue
        entries[name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return entries


def write_manifest(staging: Path, content: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` into ``staging``: ``content`` plus ``files``. Call it last."""
    manifest = {**content, "files": file_entries(staging)}
    return write_bytes_atomic(json.dumps(manifest, indent=2).encode(), staging / MANIFEST_FILE)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((run_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunSetError(f"{run_dir}: no readable {MANIFEST_FILE} ({exc})") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise RunSetError(f"{run_dir}: {MANIFEST_FILE} lists no files")
    return manifest


def verify_run(run_dir: Path | str) -> dict[str, Any]:
    """Check that ``run_dir`` holds exactly the files its manifest lists, with their sizes
    and checksums; return the manifest. Raises ``RunSetError`` naming what differs."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    listed: dict[str, dict[str, Any]] = manifest["files"]
    actual = file_entries(run_dir)
    problems = [f"{name} is missing" for name in listed if name not in actual]
    problems += [f"{name} is not in the manifest" for name in actual if name not in listed]
    problems += [
        f"{name} differs from the manifest"
        for name, entry in listed.items()
        if name in actual and actual[name] != {"size": entry["size"], "sha256": entry["sha256"]}
    ]
    if problems:
        raise RunSetError(f"{run_dir}: {'; '.join(problems)}")
    return manifest


def read_latest(root: Path | str) -> Latest | None:
    """What ``<root>/latest.json`` names, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((Path(root) / LATEST_FILE).read_text(encoding="utf-8"))
        return Latest(str(data["run_id"]), date.fromisoformat(data["run_date"]), data["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest_run_dir(root: Path | str) -> Path | None:
    """The folder of the newest complete run of ``root``, or None."""
    latest = read_latest(root)
    return None if latest is None else Path(root) / latest.path


def _newer_than_latest(root: Path, run_date: date) -> bool:
    """Whether a run of ``run_date`` takes ``latest``: a later or the same run date (a
    rerun), or no current latest that still exists. A backfill of an older date does not."""
    current = read_latest(root)
    if current is None or not (root / current.path / MANIFEST_FILE).is_file():
        return True
    return run_date >= current.run_date


def _point_latest(root: Path, run_id: str, run_date: date) -> None:
    pointer = {"run_id": run_id, "run_date": run_date.isoformat(), "path": f"{RUNS_DIR}/{run_id}"}
    write_bytes_atomic(json.dumps(pointer, indent=2).encode(), root / LATEST_FILE)


def publish_run(
    root: Path | str,
    staging: Path,
    run_id: str,
    run_date: date,
    index_row: Mapping[str, Any],
    keep_runs: int,
) -> Published:
    """Rename the staged run (manifest written) into place, then, under the lock, append its
    index row, point ``latest`` at it if it is the newest, and apply retention."""
    root = Path(root)
    if not (staging / MANIFEST_FILE).is_file():
        raise RunSetError(f"{staging}: no {MANIFEST_FILE}; write it before publishing")
    final = runs_dir(root) / run_id
    os.rename(staging, final)  # a fresh run id: the target never exists
    fsync_directory(final.parent)
    with root_lock(root):
        run_index.append_row(root, index_row)
        is_latest = _newer_than_latest(root, run_date)
        if is_latest:
            _point_latest(root, run_id, run_date)
        current = read_latest(root)
        keep = {current.run_id} if current else set()
        removed = retention.apply_retention(runs_dir(root), keep_runs, keep)
    return Published(final, is_latest, tuple(removed))
