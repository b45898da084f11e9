"""Save and load a fitted model as a directory: safetensors weights + a JSON manifest.

Layout of a saved model::

    model.json          format version, params, schema, preprocessing, architecture,
                        threshold, reference quantiles, library versions, weights sha256
    weights.safetensors every ensemble member's state_dict, keys prefixed ``member<i>.``

Nothing is ever unpickled: safetensors holds raw tensors only, and the manifest is JSON.
The weights' sha256 is checked before they are read, so a truncated or tampered file is
an error, not a silently different model. Writes are atomic: the directory is built under
a temporary name beside the target and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vae_core.errors import ModelFileError
from vae_core.output_targets import check_directory_target, fsync_directory, writing_to

FORMAT_VERSION = 1
MANIFEST_NAME = "model.json"
WEIGHTS_NAME = "weights.safetensors"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON and fsync it (inside a staging directory)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def staged_directory(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside ``path``; move it into place on success.

    Readers see the old directory or the whole new one, never half of it; on an error the
    staging directory is removed and ``path`` is left as it was. An existing ``path`` is
    refused unless ``overwrite``.
    """
    target = check_directory_target(path)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; pass overwrite=True to replace it, or save elsewhere."
        )
    with writing_to(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        fsync_directory(staging)
        if target.exists():
            retired = target.with_name(f".{target.name}.old-{os.getpid()}")
            check_directory_target(target)  # it may have been replaced while we wrote
            os.replace(target, retired)
            os.replace(staging, target)
            if retired.is_dir():
                shutil.rmtree(retired, ignore_errors=True)
            else:
                retired.unlink(missing_ok=True)
        else:
            os.replace(staging, target)
        fsync_directory(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_model(
    path: str | os.PathLike[str],
    manifest: dict[str, Any],
    members: list[dict[str, torch.Tensor]],
    overwrite: bool = False,
) -> Path:
    """Write the model directory atomically; refuse to replace one unless ``overwrite``."""
    with staged_directory(path, overwrite) as staging:
        tensors = {
            f"member{i}.{key}": value.detach().to("cpu").contiguous()
            for i, state in enumerate(members)
            for key, value in state.items()
        }
        weights = staging / WEIGHTS_NAME
        save_file(tensors, str(weights))
        full = {
            **manifest,
            "format_version": FORMAT_VERSION,
            "n_members": len(members),
            "weights_file": WEIGHTS_NAME,
            "weights_sha256": sha256_of(weights),
        }
        write_json(staging / MANIFEST_NAME, full)
    return Path(path)


def load_model(
    path: str | os.PathLike[str],
) -> tuple[dict[str, Any], list[dict[str, torch.Tensor]]]:
    """Read and verify a model directory; return its manifest and member state_dicts."""
    root = Path(path)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ModelFileError(
            f"{root} is not a saved model: {MANIFEST_NAME} is missing. Point at the "
            "directory written by VAEAnomalyDetector.save()."
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"{manifest_path} is not valid JSON ({exc}); re-save the model."
        ) from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{manifest_path} has format_version {version!r}; this vae_core reads version "
            f"{FORMAT_VERSION}. Re-train or re-save the model with this version."
        )
    weights = root / manifest.get("weights_file", WEIGHTS_NAME)
    if not weights.is_file():
        raise ModelFileError(f"{weights} is missing; the model directory is incomplete.")
    actual = sha256_of(weights)
    if actual != manifest.get("weights_sha256"):
        raise ModelFileError(
            f"{weights} has sha256 {actual}, but the manifest expects "
            f"{manifest.get('weights_sha256')}: the file was truncated or modified. "
            "Restore it from the original model or re-train."
        )
    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types on corrupt headers
        raise ModelFileError(f"{weights} cannot be read as safetensors: {exc}") from exc
    members: list[dict[str, torch.Tensor]] = [{} for _ in range(int(manifest["n_members"]))]
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        members[int(prefix.removeprefix("member"))][name] = value
    return manifest, members
