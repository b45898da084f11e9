"""Which kinds of model exist, and loading a saved model of whichever kind it is.

Each kind is a detector class (``vae_core.streaming.Detector``) that writes its ``kind``
into the manifest it saves. ``load_model`` reads that manifest and hands the directory to
the class registered for the kind. A new kind is its own module plus one line in
``KINDS``; nothing that loads or uses models changes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vae_core.detector import VAEAnomalyDetector
from vae_core.errors import ModelFileError
from vae_core.model_files import read_json
from vae_core.persistence import MANIFEST_NAME
from vae_core.sensor import SENSOR_MANIFEST, SensorVAEDetector

#: kind -> (detector class, the name of its top-level manifest file). The order is the
#: order manifests are looked for: a sensor model holds a tabular model inside it.
KINDS: dict[str, tuple[type[Any], str]] = {
    SensorVAEDetector.kind: (SensorVAEDetector, SENSOR_MANIFEST),
    VAEAnomalyDetector.kind: (VAEAnomalyDetector, MANIFEST_NAME),
}


def model_kind(path: str | os.PathLike[str]) -> str:
    """The kind of the model saved at ``path``, as its manifest says.

    Models saved before manifests named their kind are known by their manifest file.
    """
    root = Path(path)
    for kind, (_, manifest_name) in KINDS.items():
        manifest = root / manifest_name
        if manifest.is_file():
            return _declared_kind(manifest, default=kind)
    first, *others = sorted({name for _, name in KINDS.values()})
    raise ModelFileError(
        f"{root} is not a saved model: {first} is missing (and so is {', '.join(others)}). "
        "Point at the directory a detector's save() wrote."
    )


def _declared_kind(manifest: Path, default: str) -> str:
    # Read with the model files' own limits: a manifest nested 50,000 deep must be a
    # ModelFileError here too, before the kind's loader checks it field by field.
    data = read_json(manifest)
    kind = data.get("kind", default)
    if kind not in KINDS:
        raise ModelFileError(
            f"{manifest}: kind {kind!r} is not one this vae_core knows ({sorted(KINDS)})."
        )
    return str(kind)


def load_model(path: str | os.PathLike[str], device: str = "cpu") -> Any:
    """Load the model saved at ``path`` with the class its manifest's kind names."""
    detector_class, _ = KINDS[model_kind(path)]
    return detector_class.load(path, device=device)
