"""Model directories: safetensors + JSON, checked on load, written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vae_core import VAEAnomalyDetector
from vae_core.errors import ModelFileError
from vae_core.persistence import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    load_model,
    save_model,
    sha256_of,
)

MANIFEST = {"params": {"beta": 1.0}, "schema": {"columns": []}, "note": "ünïcode ok"}


def members(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {"layer.weight": torch.randn(3, 2, generator=g), "layer.bias": torch.randn(3, generator=g)},
        {"layer.weight": torch.randn(3, 2, generator=g), "layer.bias": torch.randn(3, generator=g)},
    ]


def test_round_trip(tmp_path):
    saved = members()
    path = save_model(tmp_path / "model", MANIFEST, saved)
    assert path == tmp_path / "model"
    assert sorted(p.name for p in path.iterdir()) == sorted([MANIFEST_NAME, WEIGHTS_NAME])
    manifest, loaded = load_model(path)
    for key, value in MANIFEST.items():
        assert manifest[key] == value
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["n_members"] == 2
    assert manifest["weights_sha256"] == sha256_of(path / WEIGHTS_NAME)
    assert len(loaded) == 2
    for original, restored in zip(saved, loaded, strict=True):
        assert original.keys() == restored.keys()
        for key in original:
            assert torch.equal(original[key], restored[key])


def test_files_are_plain_json_and_safetensors(tmp_path):
    path = save_model(tmp_path / "model", MANIFEST, members())
    json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    tensors = load_file(str(path / WEIGHTS_NAME))
    assert set(tensors) == {f"member{i}.layer.{p}" for i in (0, 1) for p in ("weight", "bias")}


def test_atomic_write_leaves_nothing_else_in_the_parent(tmp_path):
    save_model(tmp_path / "model", MANIFEST, members())
    save_model(tmp_path / "model", MANIFEST, members(1), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_overwriting_a_plain_file_leaves_nothing_else_in_the_parent(tmp_path):
    (tmp_path / "model").write_text("not a model, but overwrite=True says replace it")
    save_model(tmp_path / "model", MANIFEST, members(), overwrite=True)
    load_model(tmp_path / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_save_creates_missing_parent_directories(tmp_path):
    path = save_model(tmp_path / "a" / "b" / "model", MANIFEST, members())
    load_model(path)


def test_existing_path_is_not_replaced_without_overwrite(tmp_path):
    target = tmp_path / "model"
    save_model(target, MANIFEST, members())
    before = (target / WEIGHTS_NAME).read_bytes()
    with pytest.raises(FileExistsError) as info:
        save_model(target, MANIFEST, members(1))
    assert "overwrite" in str(info.value)
    assert str(target) in str(info.value)
    assert (target / WEIGHTS_NAME).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_overwrite_replaces_the_whole_directory(tmp_path):
    target = tmp_path / "model"
    save_model(target, MANIFEST, members())
    (target / "stale.txt").write_text("from an older save")
    new = members(7)
    save_model(target, {**MANIFEST, "note": "second"}, new, overwrite=True)
    assert not (target / "stale.txt").exists()
    manifest, loaded = load_model(target)
    assert manifest["note"] == "second"
    assert torch.equal(loaded[1]["layer.weight"], new[1]["layer.weight"])


def test_failed_save_cleans_up_and_keeps_the_old_model(tmp_path):
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
def saved(tmp_path):
    return save_model(tmp_path / "model", MANIFEST, members())


def test_directory_without_manifest(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match=MANIFEST_NAME):
        load_model(tmp_path / "empty")
    with pytest.raises(ModelFileError, match=MANIFEST_NAME):
        load_model(tmp_path / "does-not-exist")


def test_manifest_that_is_not_json(saved):
    (saved / MANIFEST_NAME).write_text("{ not json")
    with pytest.raises(ModelFileError, match="JSON"):
        load_model(saved)


def test_other_format_version(saved):
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


def test_model_file_error_is_an_os_error(saved):
    (saved / MANIFEST_NAME).unlink()
    with pytest.raises(OSError):
        load_model(saved)


# -- through the detector ----------------------------------------------------------------


def test_detector_save_writes_a_complete_manifest(array_detector, tmp_path):
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
