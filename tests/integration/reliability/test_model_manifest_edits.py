"""Tamper-evident model folders: each manifest edit of issue 17 refused with exit code 2,
naming the file and the field, through ``score-file`` and through the scoring flow from the
registry; a rewritten file list caught by the version's digest tag; signed folders with
``VAE_ANOMALY_MODEL_KEY``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient
from reliability_helpers import (
    MODEL_NAME,
    Champion,
    assert_one_line_error,
    flow_settings,
    run_cli,
    write_config,
)

from flows.score_flow import score_flow
from vae_core.errors import ModelFileError
from vae_core.model_files import FILES_NAME, KEY_VARIABLE, write_file_list
from vae_core.persistence import MANIFEST_NAME

pytestmark = pytest.mark.usefixtures("prefect_server")


# -- edited manifests ------------------------------------------------------------------------
def _rewrite(model: Path, change: Callable[[dict], object]) -> None:
    """Apply ``change`` to model.json, written back as ``save`` writes it."""
    manifest = json.loads((model / MANIFEST_NAME).read_text())
    change(manifest)
    (model / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _one_digit(model: Path) -> None:
    """The threshold's first digit changed in a text editor (23.64 -> 93.64)."""
    path = model / MANIFEST_NAME
    text = path.read_text()
    value = json.loads(text)["threshold"]["value"]
    digits = repr(value)
    edited = str((int(digits[0]) + 7) % 10 or 9) + digits[1:]
    assert text.count(f'"value": {digits}') == 1
    path.write_text(text.replace(f'"value": {digits}', f'"value": {edited}'))


def _nested(depth: int) -> Callable[[Path], None]:
    def edit(model: Path) -> None:
        path = model / MANIFEST_NAME
        nested = "[" * depth + "]" * depth
        path.write_text(path.read_text().replace('"training": [', f'"training": [{nested},', 1))

    return edit


def _hidden(manifest: dict) -> None:
    manifest["architecture"]["hidden_sizes"][0] += 1


MANIFEST_EDITS: dict[str, tuple[Callable[[Path], None], str]] = {
    # entry: (edit, what the error names besides the file)
    "threshold_one_digit": (_one_digit, "'threshold.value'"),
    "threshold_nan": (
        lambda m: _rewrite(m, lambda d: d["threshold"].update(value=float("nan"))),
        "'threshold.value'",
    ),
    "threshold_1e9": (
        lambda m: _rewrite(m, lambda d: d["threshold"].update(value=1e9)),
        "'threshold.value'",
    ),
    "n_members_1e30": (lambda m: _rewrite(m, lambda d: d.update(n_members=1e30)), "'n_members'"),
    "no_threshold": (lambda m: _rewrite(m, lambda d: d.pop("threshold")), "'threshold'"),
    "no_schema": (lambda m: _rewrite(m, lambda d: d.pop("schema")), "'schema'"),
    "architecture_edited": (lambda m: _rewrite(m, _hidden), "'architecture"),
    "list_not_object": (
        lambda m: (m / MANIFEST_NAME).write_text("[1, 2, 3]"),
        "JSON list, not an object",
    ),
    "nested_40": (_nested(40), "nested deeper than"),
    "nested_50000": (_nested(50_000), "nested deeper than"),
    "weights_outside": (
        lambda m: _rewrite(m, lambda d: d.update(weights_file="../../other/weights.safetensors")),
        "'weights_file'",
    ),
    "weights_proc": (
        lambda m: _rewrite(m, lambda d: d.update(weights_file="/proc/self/environ")),
        "'weights_file'",
    ),
}
#: Refused by the field checks alone, once the file list is rewritten to match the edit.
FIELD_CHECKED = {
    "threshold_nan": "'threshold.value' is nan",
    "n_members_1e30": "'n_members' must be a whole number",
    "no_threshold": "'threshold' is missing",
    "no_schema": "'schema' is missing",
    "architecture_edited": "'architecture' does not describe the weights",
    "list_not_object": "JSON list, not an object",
    "nested_40": "nested deeper than 32 levels",
    "nested_50000": "nested deeper than 32 levels",
    "weights_outside": "'weights_file' is '../../other/weights.safetensors'",
    "weights_proc": "'weights_file' is '/proc/self/environ'",
}


EDIT_ENTRIES = list(MANIFEST_EDITS)


@pytest.mark.parametrize("resealed", [False, True], ids=["edited", "list_rewritten"])
@pytest.mark.parametrize("entry", EDIT_ENTRIES)
def test_score_file_refuses_an_edited_manifest_naming_file_and_field(
    capfd, tmp_path: Path, model_dir: Path, good_files, entry: str, resealed: bool
) -> None:
    edit, field = MANIFEST_EDITS[entry]
    if resealed:
        if entry not in FIELD_CHECKED:
            pytest.skip("a plausible value: only the file list (or the registry) tells")
        field = FIELD_CHECKED[entry]
    model = Path(shutil.copytree(model_dir, tmp_path / "model"))
    edit(model)
    if resealed:
        write_file_list(model)  # as someone who also rewrote the checksums would
    output = tmp_path / "scores.parquet"
    code, _, err = run_cli(
        capfd, "score-file", good_files["score"], "--model-dir", model, "--output", output
    )
    assert code == 2, err
    assert_one_line_error(err, [str(model / MANIFEST_NAME), field])
    assert not output.exists()


@pytest.fixture
def registered_manifest(champion: Champion) -> Path:
    """The champion's model.json in the MLflow artifact store; its folder restored after."""
    client = MlflowClient(champion.store, champion.store)
    root = client.get_model_version_download_uri(MODEL_NAME, "1")
    (manifest,) = Path(urlparse(root).path).glob(f"**/detector/{MANIFEST_NAME}")
    originals = {p: p.read_bytes() for p in manifest.parent.iterdir()}
    yield manifest
    for path in set(manifest.parent.iterdir()) - set(originals):
        path.unlink()
    for path, data in originals.items():
        path.write_bytes(data)


#: The registry's copy is checked against its file list first, and a parseable manifest
#: names the field whose digest changed.
REGISTRY_NAMES = {"nested_40": "'training'"}


@pytest.mark.parametrize("entry", list(MANIFEST_EDITS))
def test_scoring_from_the_registry_refuses_an_edited_manifest(
    capfd, tmp_path: Path, champion: Champion, registered_manifest: Path, entry: str
) -> None:
    edit, field = MANIFEST_EDITS[entry]
    field = REGISTRY_NAMES.get(entry, field)
    edit(registered_manifest.parent)
    settings = flow_settings(champion.store, champion.train, champion.score, tmp_path / "out")
    code, _, err = run_cli(capfd, "score", "--config", write_config(tmp_path / "c.yaml", settings))
    assert code == 2, err
    assert_one_line_error(err, [f"models:/{MODEL_NAME}/1", f"detector/{MANIFEST_NAME}", field])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.parquet"))


def test_a_registry_copy_whose_file_list_was_rewritten_is_refused(
    capfd, tmp_path: Path, champion: Champion, registered_manifest: Path
) -> None:
    """A threshold of 1e9 with a matching file list: the version's tag still tells."""
    _rewrite(registered_manifest.parent, lambda d: d["threshold"].update(value=1e9))
    write_file_list(registered_manifest.parent)
    settings = flow_settings(champion.store, champion.train, champion.score, tmp_path / "out")
    with pytest.raises(ModelFileError) as caught:
        score_flow(settings)
    message = str(caught.value)
    assert f"detector/{FILES_NAME}: field 'digest'" in message and "registry recorded" in message
    code, _, err = run_cli(capfd, "score", "--config", write_config(tmp_path / "c.yaml", settings))
    assert code == 2
    assert_one_line_error(err, [f"models:/{MODEL_NAME}/1", "registry recorded"])


# -- the optional key ------------------------------------------------------------------------
def test_with_a_key_unsigned_and_foreign_models_are_refused(
    capfd, monkeypatch, tmp_path: Path, model_dir: Path, good_files, champion: Champion
) -> None:
    model = Path(shutil.copytree(model_dir, tmp_path / "model"))
    output = tmp_path / "scores.parquet"
    argv = ("score-file", good_files["score"], "--model-dir", model, "--output", output)
    monkeypatch.setenv(KEY_VARIABLE, "the registry's key")
    code, _, err = run_cli(capfd, *argv)
    assert code == 2
    assert_one_line_error(err, [str(model / FILES_NAME), "'hmac_sha256' is missing", KEY_VARIABLE])

    monkeypatch.setenv(KEY_VARIABLE, "another key")
    write_file_list(model)  # re-signed with another key
    monkeypatch.setenv(KEY_VARIABLE, "the registry's key")
    code, _, err = run_cli(capfd, *argv)
    assert code == 2
    assert_one_line_error(err, [str(model / FILES_NAME), "signed with another key"])

    write_file_list(model)  # signed with the right key
    code, _, err = run_cli(capfd, *argv)
    assert code == 0, err and output.is_file()

    settings = flow_settings(champion.store, champion.train, champion.score, tmp_path / "out")
    code, _, err = run_cli(capfd, "score", "--config", write_config(tmp_path / "c.yaml", settings))
    assert code == 2  # the champion was registered unsigned
    assert_one_line_error(err, [f"models:/{MODEL_NAME}/1", "'hmac_sha256' is missing"])
