"""``model.json`` checked field by field before anything is built from it.

A manifest that passed its checksum can still be wrong: saved before file lists existed,
or rewritten together with its file list. Every field the loader reads is checked here for
its type and bounds (a finite threshold, a member count the weights can hold, sizes that
fit in memory, shapes that agree with each other), so that a bad manifest is one
``ModelFileError`` naming the file and the field, never a ``KeyError`` or an allocation
that grows until it fails.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NoReturn

from vae_core import discrete_tails
from vae_core.errors import ModelFileError
from vae_core.features import flag_positions, level_widths
from vae_core.threshold import MAX_CALIBRATION

#: Bounds far above any model this library trains, far below what exhausts memory.
MAX_MEMBERS = 256
MAX_WIDTH = 1 << 20  # input, hidden and latent sizes
MAX_LAYERS = 64
MAX_COLUMNS = 1 << 20
MAX_LEVELS = 1 << 22
_REMEDY = "The file was edited or damaged: restore the model from its original copy or re-train."
_KINDS = ("numeric", "categorical", "boolean")


class Fields:
    """Typed access to the fields of one JSON file; a wrong field fails naming both."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field: str, problem: str) -> NoReturn:
        raise ModelFileError(f"{self.path}: field '{field}' {problem}. {_REMEDY}")

    def get(self, parent: dict[str, Any], key: str, field: str) -> Any:
        if key not in parent:
            self.fail(field, "is missing")
        return parent[key]

    def section(self, parent: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
        field = prefix + key
        value = self.get(parent, key, field)
        if not isinstance(value, dict):
            self.fail(field, f"must be an object, not {_json_type(value)}")
        return value

    def items(
        self, parent: dict[str, Any], key: str, field: str, most: int = MAX_COLUMNS
    ) -> list[Any]:
        value = self.get(parent, key, field)
        if not isinstance(value, list):
            self.fail(field, f"must be a list, not {_json_type(value)}")
        if len(value) > most:
            self.fail(field, f"lists {len(value)} items, more than {most}")
        return value

    def integer(self, parent: dict[str, Any], key: str, field: str, lo: int, hi: int) -> int:
        value = self.get(parent, key, field)
        return self.integer_value(value, field, lo, hi)

    def integer_value(self, value: Any, field: str, lo: int, hi: int) -> int:
        if type(value) is not int:
            self.fail(field, f"must be a whole number, not {value!r}")
        if not lo <= value <= hi:
            self.fail(field, f"is {value}, outside {lo}..{hi}")
        return value

    def number(
        self,
        parent: dict[str, Any],
        key: str,
        field: str,
        lo: float = -math.inf,
        hi: float = math.inf,
    ) -> float:
        value = self.get(parent, key, field)
        return self.number_value(value, field, lo, hi)

    def number_value(
        self,
        value: Any,
        field: str,
        lo: float = -math.inf,
        hi: float = math.inf,
        finite: bool = True,
    ) -> float:
        if type(value) not in (int, float):
            self.fail(field, f"must be a number, not {value!r}")
        if not finite and not math.isfinite(value):
            return float(value)  # recorded for explanation, not used to score
        if not math.isfinite(value):
            self.fail(field, f"is {value!r}; it must be a finite number")
        if not lo <= value <= hi:
            self.fail(field, f"is {value!r}, outside [{lo}, {hi}]")
        return float(value)

    def text(self, parent: dict[str, Any], key: str, field: str) -> str:
        value = self.get(parent, key, field)
        if not isinstance(value, str):
            self.fail(field, f"must be text, not {value!r}")
        return value

    def texts(self, parent: dict[str, Any], key: str, field: str) -> list[str]:
        values = self.items(parent, key, field)
        for i, value in enumerate(values):
            if not isinstance(value, str):
                self.fail(f"{field}[{i}]", f"must be text, not {value!r}")
        return values

    def flag(self, parent: dict[str, Any], key: str, field: str) -> bool:
        value = self.get(parent, key, field)
        if not isinstance(value, bool):
            self.fail(field, f"must be true or false, not {value!r}")
        return value


def _json_type(value: Any) -> str:
    names = {list: "a list", str: "text", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


# -- model.json ----------------------------------------------------------------------------
def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """Refuse ``manifest`` (read from ``path``) unless every field the loader reads is sound."""
    f = Fields(path)
    f.integer(manifest, "n_members", "n_members", 1, MAX_MEMBERS)
    weights = f.get(manifest, "weights_sha256", "weights_sha256")
    if not (isinstance(weights, str) and len(weights) == 64):
        f.fail("weights_sha256", "must be a sha256 (64 hex digits)")
    kind = manifest.get("kind", "tabular")
    if kind != "tabular":
        f.fail("kind", f"is {kind!r}; a model.json describes a 'tabular' model")
    random_state = f.get(manifest, "random_state_", "random_state_")
    if random_state is not None:
        f.integer_value(random_state, "random_state_", -(2**63), 2**64)
    _check_params(f, f.section(manifest, "params"))
    schema = _check_schema(f, f.section(manifest, "schema"))
    layout = _check_preprocessing(f, f.section(manifest, "preprocessing"), schema)
    _check_architecture(f, f.section(manifest, "architecture"), layout)
    _check_threshold(f, f.section(manifest, "threshold"))
    if "kl_weight_" in manifest:  # absent in models saved before it existed
        f.number(manifest, "kl_weight_", "kl_weight_", lo=0.0, hi=1e6)
    training = f.items(manifest, "training", "training", MAX_MEMBERS)
    for i, record in enumerate(training):
        if not isinstance(record, dict):
            f.fail(f"training[{i}]", f"must be an object, not {_json_type(record)}")


def _check_params(f: Fields, params: dict[str, Any]) -> None:
    from vae_core.detector import VAEAnomalyDetector  # the detector imports this module

    known = VAEAnomalyDetector().get_params()
    for name in sorted(set(params) - set(known)):
        f.fail(f"params.{name}", "is not a parameter of VAEAnomalyDetector")
    for name in ("hidden_sizes", "key_columns"):
        value = f.get(params, name, f"params.{name}")
        if not (value == "auto" or isinstance(value, list)):
            f.fail(f"params.{name}", f"must be 'auto' or a list, not {value!r}")
    if params.get("numeric_dof") is not None:
        f.number(params, "numeric_dof", "params.numeric_dof", lo=1e-6)
    # beta weighs the KL term in the loss, kl_weight in every score: finite, non-negative.
    f.number(params, "beta", "params.beta", lo=0.0, hi=1e6)
    if params.get("kl_weight", "auto") != "auto":
        f.number(params, "kl_weight", "params.kl_weight", lo=0.0, hi=1e6)
    for name, value in params.items():
        if isinstance(value, dict):
            f.fail(f"params.{name}", "must be a plain value or a list, not an object")


def _check_schema(f: Fields, schema: dict[str, Any]) -> list[dict[str, Any]]:
    columns = f.items(schema, "columns", "schema.columns")
    if not columns:
        f.fail("schema.columns", "is empty; a model has at least one feature column")
    for i, spec in enumerate(columns):
        field = f"schema.columns[{i}]"
        if not isinstance(spec, dict):
            f.fail(field, f"must be an object, not {_json_type(spec)}")
        f.text(spec, "name", f"{field}.name")
        f.text(spec, "dtype", f"{field}.dtype")
        if f.get(spec, "kind", f"{field}.kind") not in _KINDS:
            f.fail(f"{field}.kind", f"is {spec['kind']!r}, not one of {list(_KINDS)}")
        if set(spec) - {"name", "kind", "dtype"}:
            f.fail(field, f"has unknown keys {sorted(set(spec) - {'name', 'kind', 'dtype'})}")
    for name in ("key_columns", "ignored_columns"):
        if name in schema:
            f.texts(schema, name, f"schema.{name}")
    if "from_array" in schema:
        f.flag(schema, "from_array", "schema.from_array")
    return columns


def _check_preprocessing(
    f: Fields, state: dict[str, Any], columns: list[dict[str, Any]]
) -> dict[str, Any]:
    """Check the fitted encoding; return the sizes the architecture must agree with."""
    names = {spec["name"] for spec in columns}
    numeric = f.items(state, "numeric", "preprocessing.numeric")
    for i, column in enumerate(numeric):
        field = f"preprocessing.numeric[{i}]"
        if not isinstance(column, dict):
            f.fail(field, f"must be an object, not {_json_type(column)}")
        if f.text(column, "name", f"{field}.name") not in names:
            f.fail(f"{field}.name", f"is {column['name']!r}, not a column of schema.columns")
        f.number(column, "centre", f"{field}.centre")
        f.number(column, "scale", f"{field}.scale", lo=1e-300)
        if "log1p" in column:
            f.flag(column, "log1p", f"{field}.log1p")
        if "discrete_values" in column or "discrete_counts" in column:
            _check_discrete_levels(f, column, field)
        _check_flag_values(f, column, field)  # a flag modelled as a number
    categorical = f.items(state, "categorical", "preprocessing.categorical")
    cardinalities = [_check_levels(f, column, i, names) for i, column in enumerate(categorical)]
    missing = f.texts(state, "missing_indicators", "preprocessing.missing_indicators")
    f.number(state, "soft_clip", "preprocessing.soft_clip", lo=1e-6)
    if "flag_tail_median" in state:
        f.number(state, "flag_tail_median", "preprocessing.flag_tail_median", lo=0.0)
    f.integer(state, "n_rows", "preprocessing.n_rows", 0, 2**62)
    bernoulli: list[int] = []
    if "bernoulli_flags" in state and f.flag(
        state, "bernoulli_flags", "preprocessing.bernoulli_flags"
    ):
        bernoulli = flag_positions(categorical)
    return {
        "n_numeric": len(numeric),
        "cardinalities": cardinalities,
        "n_missing": len(missing),
        "bernoulli_columns": bernoulli,
    }


def _check_discrete_levels(f: Fields, column: dict[str, Any], field: str) -> None:
    """A discrete column's levels (strictly increasing) and their training counts."""
    least, most = discrete_tails.MIN_LEVELS, discrete_tails.MAX_LEVELS
    values = f.items(column, "discrete_values", f"{field}.discrete_values", most)
    counts = f.items(column, "discrete_counts", f"{field}.discrete_counts", most)
    if len(values) < least:
        f.fail(f"{field}.discrete_values", f"lists {len(values)} levels, fewer than {least}")
    if len(counts) != len(values):
        f.fail(f"{field}.discrete_counts", f"has {len(counts)} entries for {len(values)} levels")
    numbers = [f.number_value(v, f"{field}.discrete_values[{j}]") for j, v in enumerate(values)]
    if any(b <= a for a, b in zip(numbers, numbers[1:], strict=False)):
        f.fail(f"{field}.discrete_values", "must be strictly increasing")
    for j, count in enumerate(counts):
        f.number_value(count, f"{field}.discrete_counts[{j}]", lo=0)


def _check_levels(f: Fields, column: Any, i: int, names: set[str]) -> int:
    field = f"preprocessing.categorical[{i}]"
    if not isinstance(column, dict):
        f.fail(field, f"must be an object, not {_json_type(column)}")
    if f.text(column, "name", f"{field}.name") not in names:
        f.fail(f"{field}.name", f"is {column['name']!r}, not a column of schema.columns")
    levels = f.items(column, "levels", f"{field}.levels", MAX_LEVELS)
    if not levels:
        f.fail(f"{field}.levels", "is empty")
    for j, level in enumerate(levels):
        if not isinstance(level, str | int | float | bool) and level is not None:
            f.fail(f"{field}.levels[{j}]", f"must be a plain value, not {_json_type(level)}")
    _check_level_figures(f, column, field, len(levels))
    return len(levels)


def _check_level_figures(f: Fields, column: dict[str, Any], field: str, n_levels: int) -> None:
    """The per-level lists beside the levels: training counts, rare levels, numeric values."""
    if "counts" in column:  # models saved before level counts existed have none
        counts = f.items(column, "counts", f"{field}.counts", MAX_LEVELS)
        if len(counts) != n_levels:
            f.fail(f"{field}.counts", f"has {len(counts)} entries for {n_levels} levels")
        for j, count in enumerate(counts):
            f.number_value(count, f"{field}.counts[{j}]", lo=0)
    f.items(column, "rare", f"{field}.rare", MAX_LEVELS)
    if column.get("numeric_values") is not None and n_levels != 3:
        # A flag: two values and the unseen level.
        f.fail(f"{field}.numeric_values", "must hold a flag's two values, with 3 levels")
    _check_flag_values(f, column, field)


def _check_flag_values(f: Fields, column: dict[str, Any], field: str) -> None:
    """A flag's two values and their training counts, whether it is modelled as a
    Bernoulli variable (a categorical column) or as a number."""
    if column.get("numeric_values") is not None:
        values = f.items(column, "numeric_values", f"{field}.numeric_values", MAX_LEVELS)
        if len(values) != 2:
            f.fail(f"{field}.numeric_values", "must hold a flag's two values")
        for j, value in enumerate(values):
            f.number_value(value, f"{field}.numeric_values[{j}]")
    if "flag_counts" in column:  # a two-valued numeric column's training counts
        counts = f.items(column, "flag_counts", f"{field}.flag_counts", 2)
        if len(counts) != 2 or column.get("numeric_values") is None:
            f.fail(f"{field}.flag_counts", "must hold the counts of a flag's two values")
        for j, count in enumerate(counts):
            f.number_value(count, f"{field}.flag_counts[{j}]", lo=0)


def _check_architecture(f: Fields, arch: dict[str, Any], layout: dict[str, Any]) -> None:
    input_dim = f.integer(arch, "input_dim", "architecture.input_dim", 1, MAX_WIDTH)
    for name, wanted in (("n_numeric", layout["n_numeric"]), ("n_missing", layout["n_missing"])):
        value = f.integer(arch, name, f"architecture.{name}", 0, MAX_WIDTH)
        if value != wanted:
            f.fail(f"architecture.{name}", f"is {value}, but preprocessing describes {wanted}")
    cards = f.items(arch, "cardinalities", "architecture.cardinalities")
    for i, value in enumerate(cards):
        f.integer_value(value, f"architecture.cardinalities[{i}]", 1, MAX_LEVELS)
    if cards != layout["cardinalities"]:
        f.fail("architecture.cardinalities", "does not match the levels in preprocessing")
    widths = level_widths(tuple(cards), _bernoulli_columns(f, arch, layout))
    expected = layout["n_numeric"] + sum(widths) + layout["n_missing"]
    if input_dim != expected:
        f.fail("architecture.input_dim", f"is {input_dim}, but the encoding has {expected}")
    hidden = f.items(arch, "hidden_sizes", "architecture.hidden_sizes", MAX_LAYERS)
    for i, value in enumerate(hidden):
        f.integer_value(value, f"architecture.hidden_sizes[{i}]", 1, MAX_WIDTH)
    f.integer(arch, "latent_dim", "architecture.latent_dim", 1, MAX_WIDTH)
    f.number(arch, "min_log_var", "architecture.min_log_var", lo=-100.0, hi=100.0)


def _bernoulli_columns(f: Fields, arch: dict[str, Any], layout: dict[str, Any]) -> tuple[int, ...]:
    """The flags with one logit: those preprocessing codes as one input (none in a model
    saved before they had one)."""
    field = "architecture.bernoulli_columns"
    listed = f.items(arch, "bernoulli_columns", field) if "bernoulli_columns" in arch else []
    for i, value in enumerate(listed):
        f.integer_value(value, f"{field}[{i}]", 0, MAX_COLUMNS)
    if listed != layout["bernoulli_columns"]:
        f.fail(field, "does not match the flags in preprocessing")
    return tuple(listed)


def _check_threshold(f: Fields, threshold: dict[str, Any]) -> None:
    f.text(threshold, "method", "threshold.method")
    f.number(threshold, "value", "threshold.value")
    f.number(threshold, "expected_alert_rate", "threshold.expected_alert_rate", 0.0, 1.0)
    params = f.section(threshold, "params", "threshold.")
    for name, value in params.items():
        f.number_value(value, f"threshold.params.{name}", finite=False)
    if "reference_quantiles" in threshold:
        quantiles = f.section(threshold, "reference_quantiles", "threshold.")
        for name, value in quantiles.items():
            f.number_value(value, f"threshold.reference_quantiles.{name}", finite=False)
    if "n_reference" in threshold:
        f.integer(threshold, "n_reference", "threshold.n_reference", 0, 2**62)
    if "note" in threshold:
        f.text(threshold, "note", "threshold.note")
    if "calibration" in threshold:
        _check_calibration(f, threshold)
    known = {
        "calibration",
        "method",
        "value",
        "expected_alert_rate",
        "params",
        "reference_quantiles",
        "n_reference",
        "note",
    }
    if set(threshold) - known:
        f.fail("threshold", f"has unknown keys {sorted(set(threshold) - known)}")


def _check_calibration(f: Fields, threshold: dict[str, Any]) -> None:
    """A conformal threshold's reference scores: finite, sorted, bounded in number (each
    row's p-value is read from them, so an edit changes every p-value)."""
    values = f.items(threshold, "calibration", "threshold.calibration", MAX_CALIBRATION)
    scores = [f.number_value(v, f"threshold.calibration[{i}]") for i, v in enumerate(values)]
    if any(later < earlier for earlier, later in zip(scores, scores[1:], strict=False)):
        f.fail("threshold.calibration", "must be sorted in increasing order")


def check_weight_shapes(
    manifest: dict[str, Any], members: list[dict[str, Any]], path: Path
) -> None:
    """Refuse weights whose names or shapes are not those the architecture builds."""
    from vae_core.model import TabularVAE, VAEArchitecture  # torch only when loading

    arch = manifest["architecture"]
    sizes = [arch["input_dim"], *arch["hidden_sizes"], arch["latent_dim"]]
    largest = max(a * b for a, b in zip(sizes, sizes[1:], strict=False))
    held = min(sum(int(t.numel()) for t in member.values()) for member in members)
    if largest > held:
        # Checked before the network is built: an edited size must not allocate gigabytes.
        Fields(path).fail(
            "architecture",
            f"describes a layer of {largest} weights, more than a member's weights hold ({held})",
        )
    expected = {
        name: tuple(tensor.shape)
        for name, tensor in TabularVAE(VAEArchitecture.from_dict(manifest["architecture"]))
        .state_dict()
        .items()
    }
    for i, member in enumerate(members):
        found = {name: tuple(tensor.shape) for name, tensor in member.items()}
        if found == expected:
            continue
        wrong = sorted(n for n in set(found) | set(expected) if found.get(n) != expected.get(n))
        Fields(path).fail(
            "architecture",
            f"does not describe the weights of member {i} (tensor {wrong[0]!r}: weights "
            f"{found.get(wrong[0])}, architecture {expected.get(wrong[0])})",
        )


# -- sensor.json ---------------------------------------------------------------------------
def read_sensor_manifest(root: Path, name: str, format_version: int) -> dict[str, Any]:
    """``root/name`` of a sensor model, after the folder passed its file list, checked
    field by field; the inner model's folder is checked when it is loaded."""
    from vae_core.model_files import read_json, verify_folder  # it imports nothing of ours

    path = root / name
    manifest = read_json(path)
    if manifest.get("format_version") != format_version:
        raise ModelFileError(
            f"{path} has format_version {manifest.get('format_version')!r}; "
            f"this vae_core reads version {format_version}. Re-train the model."
        )
    verify_folder(root)
    f = Fields(path)
    kind = manifest.get("kind", "sensor")
    if kind != "sensor":
        f.fail("kind", f"is {kind!r}; a sensor.json describes a 'sensor' model")
    params = f.section(manifest, "params")
    if "detector_params" in params and not isinstance(params["detector_params"], dict):
        f.fail("params.detector_params", "must be an object")
    spec = f.section(manifest, "spec")
    f.text(spec, "timestamp_column", "spec.timestamp_column")
    f.texts(spec, "channels", "spec.channels")
    f.texts(spec, "entity_columns", "spec.entity_columns")
    f.integer(spec, "length", "spec.length", 1, MAX_WIDTH)
    f.flag(spec, "differences", "spec.differences")
    if "slow_channels" in spec:  # absent from the models saved before slow channels
        f.texts(spec, "slow_channels", "spec.slow_channels")
    if spec.get("gap_tolerance") is not None:
        f.number(spec, "gap_tolerance", "spec.gap_tolerance", lo=0)
    counts = f.section(manifest, "fit_status_counts")
    for status, count in counts.items():
        f.integer_value(count, f"fit_status_counts.{status}", 0, 2**62)
    f.integer(manifest, "n_windows", "n_windows", 0, 2**62)
    dtypes = f.section(manifest, "channel_dtypes")
    for channel, dtype in dtypes.items():
        if not isinstance(dtype, str):
            f.fail(f"channel_dtypes.{channel}", f"must be text, not {dtype!r}")
    return manifest


def build_checked(f_path: Path, field: str, build: Any, *args: Any, **kwargs: Any) -> Any:
    """``build(*args, **kwargs)``; the errors a constructor raises on bad values become a
    ``ModelFileError`` naming the file and the field."""
    try:
        return build(*args, **kwargs)
    except (TypeError, ValueError, KeyError) as exc:
        Fields(f_path).fail(field, f"is not accepted ({exc})")
