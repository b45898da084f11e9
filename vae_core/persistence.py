"""Save and load a fitted model as a directory: safetensors weights + a JSON manifest.

Layout of a saved model::

    model.json          format version, params, schema, preprocessing, architecture,
                        threshold, reference quantiles, library versions, weights sha256
    weights.safetensors every ensemble member's state_dict, keys prefixed ``member<i>.``
    files.json          every other file of the folder with its size and sha256, and the
                        list's own digest (``vae_core.model_files``)

Nothing is ever unpickled: safetensors holds raw tensors only, and the manifest is JSON.
Every file is checked against the file list before anything is read, so a truncated,
edited or added file is an error, not a silently different model; ``model.json`` is then
checked field by field (``vae_core.manifest_checks``). Writes are atomic: the directory is
built under a temporary name beside the target and renamed into place, and whatever is
written into it (``extra_json`` files included) is listed in ``files.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vae_core.errors import ModelFileError
from vae_core.manifest_checks import check_manifest, check_weight_shapes
from vae_core.model_files import (
    FILES_NAME,
    inside_folder,
    read_json,
    sha256_of,
    verify_folder,
    write_file_list,
)
from vae_core.output_targets import check_directory_target, fsync_directory, writing_to

FORMAT_VERSION = 1
MANIFEST_NAME = "model.json"
WEIGHTS_NAME = "weights.safetensors"
__all__ = [
    "FILES_NAME",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "WEIGHTS_NAME",
    "load_model",
    "read_extra_json",
    "save_model",
    "sha256_of",
    "staged_directory",
    "write_json",
]


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
    refused unless ``overwrite``. Every file written into the staging directory is listed
    in its ``files.json`` before it moves into place.
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
        write_file_list(staging)
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
    extra_json: Mapping[str, dict[str, Any]] | None = None,
) -> Path:
    """Write the model directory atomically; refuse to replace one unless ``overwrite``.

    ``extra_json``: more JSON files for the folder by name (``profile.json``), covered by
    the file list like the weights; ``read_extra_json`` reads one back.
    """
    with staged_directory(path, overwrite) as staging:
        for name, data in (extra_json or {}).items():
            if name in (MANIFEST_NAME, WEIGHTS_NAME, FILES_NAME):
                raise ValueError(f"extra_json cannot replace {name}")
            write_json(inside_folder(staging, name, "extra_json name"), data)
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
    # The format first: a folder of another version may list its files differently.
    manifest = read_json(manifest_path)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{manifest_path} has format_version {version!r}; this vae_core reads version "
            f"{FORMAT_VERSION}. Re-train or re-save the model with this version."
        )
    verify_folder(root)
    check_manifest(manifest, manifest_path)
    weights = inside_folder(
        root, manifest.get("weights_file", WEIGHTS_NAME), f"{manifest_path}: field 'weights_file'"
    )
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
    members = _members(tensors, manifest["n_members"], weights, manifest_path)
    check_weight_shapes(manifest, members, manifest_path)
    return manifest, members


def _members(
    tensors: dict[str, torch.Tensor], n_members: int, weights: Path, manifest_path: Path
) -> list[dict[str, torch.Tensor]]:
    """The tensors of ``member<i>.<name>`` grouped by member; every member must be there."""
    members: list[dict[str, torch.Tensor]] = [{} for _ in range(n_members)]
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        index = prefix.removeprefix("member")
        if not (index.isdigit() and name and int(index) < n_members):
            raise ModelFileError(
                f"{weights} holds tensor {key!r}, which is not one of the {n_members} members "
                f"{manifest_path} field 'n_members' describes. Restore the model or re-train."
            )
        members[int(index)][name] = value
    empty = [i for i, member in enumerate(members) if not member]
    if empty:
        raise ModelFileError(
            f"{manifest_path}: field 'n_members' is {n_members}, but {weights} holds no "
            f"weights for member {empty[0]}. Restore the model from its original copy or "
            "re-train."
        )
    return members


def read_extra_json(path: str | os.PathLike[str], name: str) -> dict[str, Any] | None:
    """A JSON file ``save_model`` wrote through ``extra_json``; None when the folder has
    none (a model saved before it existed). Call after ``load_model`` checked the folder."""
    target = inside_folder(Path(path), name, "extra JSON file name")
    if not target.exists():
        return None
    return read_json(target)
