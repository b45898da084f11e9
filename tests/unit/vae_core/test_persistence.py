"""Model directories: safetensors + JSON, checked on load, written atomically."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import edit_manifest
from vae_core import SensorVAEDetector, VAEAnomalyDetector
from vae_core.detector_files import detector_manifest
from vae_core.errors import ModelFileError
from vae_core.model_files import KEY_VARIABLE, file_list_digest, verify_folder, write_file_list
from vae_core.model_kinds import load_model as load_model_of_any_kind
from vae_core.persistence import (
    FILES_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    load_model,
    read_extra_json,
    save_model,
    sha256_of,
)


@pytest.fixture(scope="module")
def real(array_detector) -> tuple[dict, list[dict[str, torch.Tensor]]]:
    """A real detector's manifest and member weights, as ``save`` hands them over."""
    manifest = {**detector_manifest(array_detector), "note": "ünïcode ok"}
    return manifest, [m.state_dict() for m in array_detector.models_]


@pytest.fixture
def MANIFEST(real) -> dict:  # noqa: N802 - reads as the constant it replaced
    return json.loads(json.dumps(real[0]))  # as JSON holds it: lists, not tuples


@pytest.fixture
def members(real):
    """``members(seed)``: the real members' weights, shifted by ``seed`` (0: unchanged)."""

    def make(seed: int = 0) -> list[dict[str, torch.Tensor]]:
        return [{k: v + seed for k, v in state.items()} for state in real[1]]

    return make


def test_round_trip(tmp_path, MANIFEST, members):
    saved = members()
    path = save_model(tmp_path / "model", MANIFEST, saved)
    assert path == tmp_path / "model"
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [FILES_NAME, MANIFEST_NAME, WEIGHTS_NAME]
    )
    manifest, loaded = load_model(path)
    for key, value in MANIFEST.items():
        assert manifest[key] == value
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["n_members"] == len(saved)
    assert manifest["weights_sha256"] == sha256_of(path / WEIGHTS_NAME)
    assert len(loaded) == len(saved)
    for original, restored in zip(saved, loaded, strict=True):
        assert original.keys() == restored.keys()
        for key in original:
            assert torch.equal(original[key], restored[key])


def test_files_are_plain_json_and_safetensors(tmp_path, MANIFEST, members):
    path = save_model(tmp_path / "model", MANIFEST, members())
    json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    tensors = load_file(str(path / WEIGHTS_NAME))
    assert set(tensors) == {f"member0.{name}" for name in members()[0]}
    listed = json.loads((path / FILES_NAME).read_text(encoding="utf-8"))["files"]
    assert sorted(listed) == [MANIFEST_NAME, WEIGHTS_NAME]


def test_atomic_write_leaves_nothing_else_in_the_parent(tmp_path, MANIFEST, members):
    save_model(tmp_path / "model", MANIFEST, members())
    save_model(tmp_path / "model", MANIFEST, members(1), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_overwriting_a_plain_file_leaves_nothing_else_in_the_parent(tmp_path, MANIFEST, members):
    (tmp_path / "model").write_text("not a model, but overwrite=True says replace it")
    save_model(tmp_path / "model", MANIFEST, members(), overwrite=True)
    load_model(tmp_path / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_save_creates_missing_parent_directories(tmp_path, MANIFEST, members):
    path = save_model(tmp_path / "a" / "b" / "model", MANIFEST, members())
    load_model(path)


def test_existing_path_is_not_replaced_without_overwrite(tmp_path, MANIFEST, members):
    target = tmp_path / "model"
    save_model(target, MANIFEST, members())
    before = (target / WEIGHTS_NAME).read_bytes()
    with pytest.raises(FileExistsError) as info:
        save_model(target, MANIFEST, members(1))
    assert "overwrite" in str(info.value)
    assert str(target) in str(info.value)
    assert (target / WEIGHTS_NAME).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_overwrite_replaces_the_whole_directory(tmp_path, MANIFEST, members):
    target = tmp_path / "model"
    save_model(target, MANIFEST, members())
    (target / "stale.txt").write_text("from an older save")
    new = members(7)
    save_model(target, {**MANIFEST, "note": "second"}, new, overwrite=True)
    assert not (target / "stale.txt").exists()
    manifest, loaded = load_model(target)
    assert manifest["note"] == "second"
    name = next(iter(new[0]))
    assert torch.equal(loaded[0][name], new[0][name])


def test_failed_save_cleans_up_and_keeps_the_old_model(tmp_path, MANIFEST, members):
    target = tmp_path / "model"
    save_model(target, MANIFEST, members())
    broken = [{"layer.weight": "not a tensor"}]
    with pytest.raises(AttributeError):
        save_model(target, MANIFEST, broken, overwrite=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        save_model(target, {"unserialisable": object()}, members(), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    manifest, _ = load_model(target)
    assert manifest["note"] == MANIFEST["note"]


# -- load errors -------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, MANIFEST, members):
    return save_model(tmp_path / "model", MANIFEST, members())


def test_directory_without_manifest(tmp_path, MANIFEST):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match=MANIFEST_NAME):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelFileError, match=MANIFEST_NAME):
        load_model(tmp_path / "does-not-exist")


def test_manifest_that_is_not_json(saved, MANIFEST):
    (saved / MANIFEST_NAME).write_text("{ not json")
    with pytest.raises(ModelFileError, match="JSON"):
        load_model(saved)


def test_other_format_version(saved, MANIFEST):
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (saved / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError) as info:
        load_model(saved)
    assert f"format_version {FORMAT_VERSION + 1}" in str(info.value)


def test_missing_weights(saved):
    (saved / WEIGHTS_NAME).unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_model(saved)


@pytest.mark.parametrize("where", ["header", "middle", "last"])
def test_tampered_weights_fail_the_checksum(saved, where):
    weights = saved / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    position = {"header": 10, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[position] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_model(saved)


def test_truncated_weights_fail_the_checksum(saved):
    weights = saved / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(ModelFileError, match="sha256"):
        load_model(saved)


def test_model_file_error_is_an_os_error(saved, MANIFEST):
    (saved / MANIFEST_NAME).unlink()
    with pytest.raises(OSError):
        load_model(saved)


# -- through the detector ----------------------------------------------------------------


def test_detector_save_writes_a_complete_manifest(array_detector, tmp_path, MANIFEST):
    path = array_detector.save(tmp_path / "detector")
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    for key in ("params", "schema", "preprocessing", "architecture", "threshold", "versions"):
        assert key in manifest
    assert manifest["threshold"]["value"] == array_detector.threshold_.value
    assert "torch" in manifest["versions"] and "vae_core" in manifest["versions"]


def test_detector_load_rejects_tampered_weights(array_detector, tmp_path):
    path = array_detector.save(tmp_path / "detector")
    data = bytearray((path / WEIGHTS_NAME).read_bytes())
    data[-3] ^= 0xFF
    (path / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        VAEAnomalyDetector.load(path)


def test_detector_save_refuses_to_overwrite_by_default(array_detector, array_data, tmp_path):
    path = array_detector.save(tmp_path / "detector")
    with pytest.raises(FileExistsError):
        array_detector.save(path)
    array_detector.save(path, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["detector"]
    loaded = VAEAnomalyDetector.load(path)
    np.testing.assert_array_equal(
        loaded.decision_function(array_data), array_detector.decision_function(array_data)
    )


# -- the file list -----------------------------------------------------------------------


def _edit(path, change) -> None:
    """Apply ``change`` to the parsed model.json and write it back."""
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    change(manifest)
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_every_file_is_listed_and_the_digest_is_the_lists(saved):
    listed = json.loads((saved / FILES_NAME).read_text())
    assert sorted(listed["files"]) == [MANIFEST_NAME, WEIGHTS_NAME]
    weights = listed["files"][WEIGHTS_NAME]
    assert weights == {"sha256": sha256_of(saved / WEIGHTS_NAME), "size": weights["size"]}
    assert "threshold.value" in listed["files"][MANIFEST_NAME]["fields"]
    assert file_list_digest(saved) == listed["digest"] == verify_folder(saved)
    assert "hmac_sha256" not in listed


def test_extra_json_is_written_listed_and_read_back(tmp_path, MANIFEST, members):
    path = save_model(tmp_path / "m", MANIFEST, members(), extra_json={"profile.json": {"a": 1}})
    assert read_extra_json(path, "profile.json") == {"a": 1}
    assert read_extra_json(path, "other.json") is None
    assert "profile.json" in json.loads((path / FILES_NAME).read_text())["files"]
    (path / "profile.json").write_text('{"a": 2}')
    with pytest.raises(ModelFileError, match=r"profile\.json: field\(s\) 'a' changed"):
        load_model(path)
    with pytest.raises(ValueError, match="cannot replace"):
        save_model(tmp_path / "n", MANIFEST, members(), extra_json={MANIFEST_NAME: {}})
    with pytest.raises(ModelFileError, match="inside the model folder"):
        save_model(tmp_path / "o", MANIFEST, members(), extra_json={"../x.json": {}})


def test_a_one_digit_threshold_edit_names_the_file_and_field(saved):
    _edit(saved, lambda m: m["threshold"].update(value=m["threshold"]["value"] + 70))
    with pytest.raises(ModelFileError) as info:
        load_model(saved)
    message = str(info.value)
    assert str(saved / MANIFEST_NAME) in message and "'threshold.value'" in message
    assert "'threshold.method'" not in message


def test_an_added_file_a_missing_file_and_a_link_are_refused(saved, tmp_path):
    (saved / "notes.txt").write_text("added later")
    with pytest.raises(ModelFileError, match=r"notes\.txt is not in the file list"):
        load_model(saved)
    (saved / "notes.txt").unlink()
    (saved / "link").symlink_to(tmp_path)
    with pytest.raises(ModelFileError, match=r"link is a link"):
        load_model(saved)
    (saved / "link").unlink()
    load_model(saved)
    listed = json.loads((saved / FILES_NAME).read_text())
    (saved / WEIGHTS_NAME).rename(tmp_path / "moved")
    with pytest.raises(ModelFileError, match=r"weights\.safetensors is missing"):
        load_model(saved)
    assert listed["files"][WEIGHTS_NAME]


def test_an_edited_file_list_is_refused(saved):
    listed = json.loads((saved / FILES_NAME).read_text())
    listed["files"][WEIGHTS_NAME]["size"] += 1
    (saved / FILES_NAME).write_text(json.dumps(listed))
    with pytest.raises(ModelFileError, match=r"files\.json: field 'digest'"):
        load_model(saved)
    (saved / FILES_NAME).write_text("[1, 2]")
    with pytest.raises(ModelFileError, match=r"files\.json holds a JSON list, not an object"):
        load_model(saved)


def test_a_digest_expected_elsewhere_must_match(saved):
    digest = verify_folder(saved)
    assert verify_folder(saved, expected_digest=digest) == digest
    with pytest.raises(ModelFileError, match="registry recorded"):
        verify_folder(saved, expected_digest="0" * 64)
    (saved / FILES_NAME).unlink()
    with pytest.raises(ModelFileError, match="registry records one"):
        verify_folder(saved, expected_digest=digest)


def test_a_model_saved_before_file_lists_still_loads(saved):
    (saved / FILES_NAME).unlink()
    manifest, _ = load_model(saved)
    assert manifest["n_members"] == 1
    _edit(saved, lambda m: m["threshold"].update(value=float("nan")))
    with pytest.raises(ModelFileError, match=r"field 'threshold\.value' is nan"):
        load_model(saved)


# -- the optional key ----------------------------------------------------------------------


def test_a_key_signs_the_list_and_is_required_at_load(tmp_path, MANIFEST, members, monkeypatch):
    unsigned = save_model(tmp_path / "unsigned", MANIFEST, members())
    monkeypatch.setenv(KEY_VARIABLE, "first key")
    signed = save_model(tmp_path / "signed", MANIFEST, members())
    assert len(json.loads((signed / FILES_NAME).read_text())["hmac_sha256"]) == 64
    load_model(signed)
    with pytest.raises(ModelFileError, match=rf"field 'hmac_sha256' is missing.*{KEY_VARIABLE}"):
        load_model(unsigned)
    (unsigned / FILES_NAME).unlink()
    with pytest.raises(ModelFileError, match=rf"files\.json is missing, but {KEY_VARIABLE}"):
        load_model(unsigned)
    monkeypatch.setenv(KEY_VARIABLE, "another key")
    resigned = save_model(tmp_path / "resigned", MANIFEST, members())
    monkeypatch.setenv(KEY_VARIABLE, "first key")
    with pytest.raises(ModelFileError, match="signed with another key"):
        load_model(resigned)
    monkeypatch.delenv(KEY_VARIABLE)
    load_model(resigned)  # without a key the checksums alone are checked


# -- model.json field by field (the file list rewritten to match, as an editor could) ------


EDITS = {
    "nan_threshold": (lambda m: m["threshold"].update(value=float("nan")), "threshold.value"),
    "text_threshold": (lambda m: m["threshold"].update(value="23.6"), "threshold.value"),
    "members_1e30": (lambda m: m.update(n_members=1e30), "n_members"),
    "members_huge": (lambda m: m.update(n_members=10**30), "n_members"),
    "members_more": (lambda m: m.update(n_members=2), "n_members"),
    "no_threshold": (lambda m: m.pop("threshold"), "threshold"),
    "no_schema": (lambda m: m.pop("schema"), "schema"),
    "schema_list": (lambda m: m.update(schema=[1, 2]), "schema"),
    "hidden_edited": (lambda m: m["architecture"]["hidden_sizes"].__setitem__(0, 17), "archit"),
    "hidden_huge": (lambda m: m["architecture"].update(hidden_sizes=[1 << 20] * 3), "archit"),
    "input_dim": (lambda m: m["architecture"].update(input_dim=99), "architecture.input_dim"),
    "unknown_param": (lambda m: m["params"].update(evil=1), "params.evil"),
    "beta_nan": (lambda m: m["params"].update(beta=float("nan")), "params.beta"),
    "no_beta": (lambda m: m["params"].pop("beta"), "params.beta"),
    "bad_kind": (lambda m: m["schema"]["columns"][0].update(kind="x"), "schema.columns[0].kind"),
    "scale_zero": (lambda m: m["preprocessing"]["numeric"][0].update(scale=0), "scale"),
    "weights_up": (lambda m: m.update(weights_file="../../other/weights.safetensors"), "weights"),
    "weights_abs": (lambda m: m.update(weights_file="/proc/self/environ"), "weights_file"),
    "weights_nul": (lambda m: m.update(weights_file="weights\x00.bin"), "weights_file"),
    "weights_dot": (lambda m: m.update(weights_file="a/../weights.safetensors"), "weights_file"),
    "weights_win": (lambda m: m.update(weights_file="C:\\weights"), "weights_file"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_each_manifest_edit_is_refused_naming_the_file_and_field(saved, edit):
    change, field = EDITS[edit]
    edit_manifest(saved, change)
    with pytest.raises(ModelFileError) as info:
        VAEAnomalyDetector.load(saved)
    message = str(info.value)
    assert str(saved / MANIFEST_NAME) in message and field in message, message


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_json_is_refused(saved, depth):
    text = (saved / MANIFEST_NAME).read_text()
    nested = "[" * depth + "]" * depth
    (saved / MANIFEST_NAME).write_text(text.replace('"training": [', f'"training": [{nested},', 1))
    write_file_list(saved)
    with pytest.raises(ModelFileError, match=r"model\.json is nested deeper than 32 levels"):
        load_model(saved)


def test_a_list_instead_of_an_object_is_refused(saved):
    (saved / MANIFEST_NAME).write_text("[]")
    write_file_list(saved)
    with pytest.raises(ModelFileError, match=r"model\.json holds a JSON list, not an object"):
        load_model(saved)


def test_a_weights_file_behind_a_link_is_refused(saved, tmp_path):
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((saved / WEIGHTS_NAME).read_bytes())
    (saved / WEIGHTS_NAME).unlink()
    (saved / WEIGHTS_NAME).symlink_to(outside)
    (saved / FILES_NAME).unlink()  # no file list: the manifest's own path check refuses it
    with pytest.raises(ModelFileError, match="link"):
        load_model(saved)


def test_a_pipe_in_the_folder_is_refused_without_blocking(saved):
    os.mkfifo(saved / "pipe")
    with pytest.raises(ModelFileError, match=r"pipe is not a regular file"):
        load_model(saved)


@pytest.fixture(scope="module")
def sensor_detector() -> SensorVAEDetector:
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=120, freq="s"),
            "a": np.sin(np.arange(120) / 5),
            "b": np.cos(np.arange(120) / 5),
        }
    )
    return SensorVAEDetector(
        timestamp_column="ts",
        window_length=4,
        detector_params={"max_epochs": 2, "hidden_sizes": (8,), "latent_dim": 2},
    ).fit(frame)


def test_a_sensor_model_lists_its_inner_model_and_refuses_edits_there(sensor_detector, tmp_path):
    path = sensor_detector.save(tmp_path / "sensor")
    listed = json.loads((path / FILES_NAME).read_text())["files"]
    assert {"sensor.json", "vae/model.json", "vae/weights.safetensors", "vae/files.json"} <= set(
        listed
    )
    load_model_of_any_kind(path)
    _edit(path / "vae", lambda m: m["threshold"].update(value=1e9))
    with pytest.raises(ModelFileError, match=r"vae/model\.json: field\(s\) 'threshold\.value'"):
        load_model_of_any_kind(path)


SENSOR_EDITS = {
    "length_text": (lambda m: m["spec"].update(length="4"), "'spec.length'"),
    "length_huge": (lambda m: m["spec"].update(length=10**12), "'spec.length'"),
    "no_spec": (lambda m: m.pop("spec"), "'spec' is missing"),
    "spec_list": (lambda m: m.update(spec=[]), "'spec' must be an object"),
    "unknown_param": (lambda m: m["params"].update(evil=1), "'params' is not accepted"),
    "kind": (lambda m: m.update(kind="tabular"), "'kind'"),
    "windows": (lambda m: m.update(n_windows=-1), "'n_windows'"),
}


@pytest.mark.parametrize("edit", list(SENSOR_EDITS))
def test_each_sensor_manifest_edit_is_refused_naming_the_field(sensor_detector, tmp_path, edit):
    change, field = SENSOR_EDITS[edit]
    path = sensor_detector.save(tmp_path / "sensor")
    manifest = json.loads((path / "sensor.json").read_text())
    change(manifest)
    (path / "sensor.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"sensor\.json: field\(s\)"):
        SensorVAEDetector.load(path)  # the file list tells first
    write_file_list(path)
    with pytest.raises(ModelFileError) as info:
        SensorVAEDetector.load(path)
    assert str(path / "sensor.json") in str(info.value) and field in str(info.value)


def test_the_training_profile_is_covered_by_the_file_list(array_detector, tmp_path):
    path = array_detector.save(tmp_path / "detector")
    assert "profile.json" in json.loads((path / FILES_NAME).read_text())["files"]
    profile = json.loads((path / "profile.json").read_text())
    profile["n_rows"] += 1
    (path / "profile.json").write_text(json.dumps(profile))
    with pytest.raises(ModelFileError, match=r"profile\.json: field\(s\) 'n_rows' changed"):
        VAEAnomalyDetector.load(path)
