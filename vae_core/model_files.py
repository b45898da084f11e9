"""Tamper evidence for a saved model folder: a file list with sha256 and size, and its digest.

``write_file_list`` lists every file of a folder (whatever wrote it: weights, manifests,
``profile.json``, an inner model's folder) in ``files.json``: relative path, size, sha256,
and for JSON objects a digest per field (two levels deep), so that an edit can be named
down to the field. The list's own digest (sha256 of its canonical JSON) is returned; the
registry stores it with the model version. ``verify_folder`` checks the list, the digest
and every file, and refuses files that are not listed, listed files that are missing, and
links. With ``VAE_ANOMALY_MODEL_KEY`` set, the list is signed (HMAC-SHA256) at save and a
valid signature is required at load.

What this protects against: accidents (a truncated copy, a half-synced folder, a wrong
file) and casual edits (a threshold changed in a text editor). It does not protect against
someone who can also rewrite ``files.json``: only the registry's digest or the HMAC key,
kept where that person cannot write, does.

``read_json`` is the one reader of a model's JSON files: bounded size and nesting, a JSON
object at the top, and the file named in every error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from vae_core.errors import ModelFileError

FILES_NAME = "files.json"
FILE_LIST_VERSION = 1
#: Environment variable holding the key that signs (and must sign) a model's file list.
KEY_VARIABLE = "VAE_ANOMALY_MODEL_KEY"
#: Bounds on a model's JSON files: far above any real manifest, far below harm.
MAX_JSON_BYTES = 256 << 20
MAX_JSON_DEPTH = 32
MAX_FILES = 10_000
_HEX = frozenset("0123456789abcdef")
_REMEDY = "The folder was edited or damaged: restore the model from its original copy or re-train."


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(data: Any) -> bytes:
    """One byte string per JSON value: what digests and signatures are computed over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def model_key() -> bytes | None:
    """The signing key from the environment; an empty value counts as none."""
    value = os.environ.get(KEY_VARIABLE, "")
    return value.encode("utf-8") if value else None


# -- reading JSON safely -----------------------------------------------------------------
def json_depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
        deepest = max(deepest, depth + (1 if isinstance(item, dict | list) else 0))
    return deepest


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The JSON object in ``path``; ``ModelFileError`` naming the file for anything else."""
    if path.is_symlink():
        raise ModelFileError(f"{path} is a link; a model's files must be plain files. {_REMEDY}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelFileError(
            f"{path} is {size} bytes, more than the {max_bytes} a model's JSON file may hold. "
            + _REMEDY
        )
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc}); re-save the model.") from exc
    except RecursionError as exc:
        raise ModelFileError(
            f"{path} is nested deeper than {MAX_JSON_DEPTH} levels. {_REMEDY}"
        ) from exc
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} holds a JSON {type(data).__name__}, not an object. {_REMEDY}")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise ModelFileError(f"{path} is nested deeper than {MAX_JSON_DEPTH} levels. {_REMEDY}")
    return data


# -- paths inside the folder ------------------------------------------------------------
def inside_folder(root: Path, relative: Any, where: str) -> Path:
    """``root / relative``, refused unless it is a relative path that stays in ``root``."""
    if not isinstance(relative, str) or not relative:
        raise ModelFileError(
            f"{where} must be a relative path in the model folder, got {relative!r}. {_REMEDY}"
        )
    pure = PurePosixPath(relative)
    if (
        pure.is_absolute()
        or "\\" in relative
        or ":" in relative
        or any(ord(c) < 32 for c in relative)
        or any(part in ("..", "") for part in relative.split("/"))
    ):
        raise ModelFileError(
            f"{where} is {relative!r}: a path must stay inside the model folder (no '..', no "
            f"absolute path). {_REMEDY}"
        )
    path = root / pure
    current = root
    for part in pure.parts:
        current = current / part
        if current.is_symlink():
            raise ModelFileError(
                f"{where} is {relative!r}, which passes through the link {current}; a model's "
                f"files must be plain files inside its folder. {_REMEDY}"
            )
    return path


# -- the file list -----------------------------------------------------------------------
def field_digests(data: dict[str, Any]) -> dict[str, str]:
    """sha256 per field of a JSON object, two levels deep (``threshold.value``)."""
    digests = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            for sub, inner in value.items():
                digests[f"{key}.{sub}"] = hashlib.sha256(canonical_json(inner)).hexdigest()
        else:
            digests[key] = hashlib.sha256(canonical_json(value)).hexdigest()
    return digests


def _folder_files(root: Path) -> list[str]:
    """Every file under ``root`` as a relative POSIX path, the file list itself excepted;
    a link or anything that is not a plain file is refused."""
    found = []
    for directory, subdirs, files in os.walk(root, followlinks=False):
        here = Path(directory)
        for name in [*subdirs, *files]:
            path = here / name
            if path.is_symlink():
                raise ModelFileError(
                    f"{path} is a link; a model's files must be plain files inside its folder. "
                    + _REMEDY
                )
        for name in files:
            if not stat.S_ISREG((here / name).lstat().st_mode):
                # A pipe or a device would block or never end when it is hashed.
                raise ModelFileError(
                    f"{here / name} is not a regular file; a model's files must be plain "
                    f"files. {_REMEDY}"
                )
            relative = (here / name).relative_to(root).as_posix()
            if relative != FILES_NAME:
                found.append(relative)
    return sorted(found)


def _json_fields(path: Path) -> dict[str, str] | None:
    if path.suffix != ".json" or path.stat().st_size > MAX_JSON_BYTES:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        return None
    return field_digests(data) if isinstance(data, dict) else None


def _file_list_body(root: Path) -> dict[str, Any]:
    entries: dict[str, Any] = {}
    for relative in _folder_files(root):
        path = root / relative
        entry: dict[str, Any] = {"sha256": sha256_of(path), "size": path.stat().st_size}
        fields = _json_fields(path)
        if fields is not None:
            entry["fields"] = fields
        entries[relative] = entry
    return {"version": FILE_LIST_VERSION, "algorithm": "sha256", "files": entries}


def write_file_list(root: Path) -> str:
    """List every file of ``root`` in ``root/files.json``; return the list's digest."""
    from vae_core.persistence import write_json  # persistence imports this module

    body = _file_list_body(root)
    payload = canonical_json(body)
    document = {**body, "digest": hashlib.sha256(payload).hexdigest()}
    key = model_key()
    if key is not None:
        document["hmac_sha256"] = hmac.new(key, payload, hashlib.sha256).hexdigest()
    write_json(root / FILES_NAME, document)
    return str(document["digest"])


def file_list_digest(root: str | os.PathLike[str]) -> str:
    """The digest ``write_file_list`` returned for ``root``, checked against the folder."""
    digest = verify_folder(Path(root))
    if digest is None:
        raise ModelFileError(f"{Path(root) / FILES_NAME} is missing; re-save the model.")
    return digest


def verify_folder(root: Path, expected_digest: str | None = None) -> str | None:
    """Check ``root`` against its file list; return the list's digest.

    ``expected_digest``: the digest recorded elsewhere (the registry's version tag); a
    different one is refused. A folder saved before file lists existed has none: it
    returns None, unless a key is set or a digest is expected, which require one.
    """
    files_path = root / FILES_NAME
    key = model_key()
    if not files_path.exists() and not files_path.is_symlink():
        if key is not None or expected_digest is not None:
            why = f"{KEY_VARIABLE} is set" if key is not None else "the registry records one"
            raise ModelFileError(
                f"{files_path} is missing, but {why}: the model's files cannot be checked. "
                + _REMEDY
            )
        return None
    document = read_json(files_path)
    entries = _checked_entries(document, files_path)
    body = {"version": document["version"], "algorithm": "sha256", "files": entries}
    payload = canonical_json(body)
    digest = hashlib.sha256(payload).hexdigest()
    if document.get("digest") != digest:
        raise ModelFileError(
            f"{files_path}: field 'digest' ({document.get('digest')!r}) is not the digest of "
            f"the file list ({digest}): the list was edited. {_REMEDY}"
        )
    if expected_digest is not None and digest != expected_digest:
        raise ModelFileError(
            f"{files_path}: field 'digest' is {digest}, but the registry recorded "
            f"{expected_digest} for this model version: the folder is not the one registered. "
            + _REMEDY
        )
    if key is not None:
        _check_signature(document, payload, key, files_path)
    _check_files(root, entries, files_path)
    return digest


def _check_signature(document: dict[str, Any], payload: bytes, key: bytes, where: Path) -> None:
    signature = document.get("hmac_sha256")
    if not isinstance(signature, str):
        raise ModelFileError(
            f"{where}: field 'hmac_sha256' is missing: the model was saved without the key, "
            f"and {KEY_VARIABLE} requires a signed model. Re-save it with the key set."
        )
    wanted = hmac.new(key, payload, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, wanted):
        raise ModelFileError(
            f"{where}: field 'hmac_sha256' does not match: the file list was signed with "
            f"another key or edited after signing. Check {KEY_VARIABLE}, or restore the model."
        )


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _checked_entries(document: dict[str, Any], where: Path) -> dict[str, Any]:
    """The file list's entries, each checked for shape."""
    if document.get("version") != FILE_LIST_VERSION:
        raise ModelFileError(
            f"{where}: field 'version' is {document.get('version')!r}; this vae_core reads "
            f"version {FILE_LIST_VERSION}. {_REMEDY}"
        )
    if document.get("algorithm") != "sha256":
        raise ModelFileError(f"{where}: field 'algorithm' must be 'sha256'. {_REMEDY}")
    entries = document.get("files")
    if not isinstance(entries, dict) or not 0 < len(entries) <= MAX_FILES:
        raise ModelFileError(
            f"{where}: field 'files' must be an object listing 1 to {MAX_FILES} files. " + _REMEDY
        )
    for name, entry in entries.items():
        field = f"files.{name}"
        ok = (
            isinstance(entry, dict)
            and _is_hex(entry.get("sha256"))
            and type(entry.get("size")) is int
            and entry["size"] >= 0
        )
        fields = entry.get("fields") if isinstance(entry, dict) else None
        if fields is not None and not (
            isinstance(fields, dict) and all(_is_hex(v) for v in fields.values())
        ):
            ok = False
        if not ok:
            raise ModelFileError(
                f"{where}: field '{field}' must hold a sha256 (64 hex digits), a size and "
                f"optional field digests. {_REMEDY}"
            )
    return entries


def _check_files(root: Path, entries: dict[str, Any], where: Path) -> None:
    for name in entries:
        inside_folder(root, name, f"{where}: field 'files.{name}'")
    present = set(_folder_files(root))
    missing = sorted(set(entries) - present)
    if missing:
        raise ModelFileError(
            f"{root / missing[0]} is missing; {where} lists it. The model folder is "
            "incomplete: restore it from its original copy or re-train."
        )
    extra = sorted(present - set(entries))
    if extra:
        raise ModelFileError(
            f"{root / extra[0]} is not in the file list {where}: a file was added to the "
            f"model folder after it was saved. {_REMEDY}"
        )
    for name, entry in entries.items():
        path = root / name
        actual = sha256_of(path)
        if actual == entry["sha256"] and path.stat().st_size == entry["size"]:
            continue
        if entry.get("fields") is not None and _json_fields(path) is None:
            read_json(path)  # no longer a JSON object: say what it is instead
        changed = _changed_fields(path, entry.get("fields"))
        if changed:
            raise ModelFileError(
                f"{path}: field(s) {changed} changed since the model was saved (its sha256 "
                f"is no longer the one {where} lists). {_REMEDY}"
            )
        raise ModelFileError(
            f"{path} has sha256 {actual} (size {path.stat().st_size}), but the file list "
            f"{where} expects {entry['sha256']} (size {entry['size']}): the file was truncated "
            f"or modified. {_REMEDY}"
        )


def _changed_fields(path: Path, saved: dict[str, str] | None, limit: int = 5) -> str | None:
    """The fields of a JSON file whose digest is not the saved one, as text."""
    if saved is None:
        return None
    current = _json_fields(path)
    if current is None:
        return None
    names = {name for name in set(saved) | set(current) if saved.get(name) != current.get(name)}
    # A section removed or added whole is named once, not by each of its fields.
    for side in (saved, current):
        for section in {n.split(".", 1)[0] for n in names}:
            if not any(n == section or n.startswith(section + ".") for n in side):
                names = {n for n in names if n.split(".", 1)[0] != section} | {section}
    if not names:
        return None
    ordered = sorted(names)
    shown = ", ".join(f"'{n}'" for n in ordered[:limit])
    return shown + (f" and {len(ordered) - limit} more" if len(ordered) > limit else "")
