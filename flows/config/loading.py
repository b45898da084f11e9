"""Reading the settings: YAML layers merged key by key, the environment, CLI overrides,
and validation errors turned into one line per key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from flows.config.base import ConfigError
from flows.config.sections import Settings
from flows.config.thresholds import refuse_old_threshold_keys

#: The repository's config layers. They hold only what differs from the code's defaults, so
#: an installed CLI run elsewhere, which finds none, differs only in those keys.
CONFIG_DIR = Path("configs")
#: Names another folder of layers; read when settings are loaded, never at import.
CONFIG_DIR_VARIABLE = "VAE_ANOMALY_CONFIG_DIR"


ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "MLFLOW_TRACKING_URI": ("tracking", "tracking_uri"),
    "VAE_ANOMALY_TRACKING_URI": ("tracking", "tracking_uri"),
    "VAE_ANOMALY_TRAIN_DATA": ("train", "data_path"),
    "VAE_ANOMALY_SCORE_INPUT": ("score", "input_path"),
    "VAE_ANOMALY_OUTPUT_DIR": ("score", "output_dir"),
}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into ``base``, mappings key by key; a mapping that names another
    ``method`` (a threshold rule) replaces the earlier one, whose keys it does not have."""
    merged = dict(base)
    for key, value in override.items():
        earlier = merged.get(key)
        if isinstance(value, dict) and isinstance(earlier, dict):
            if value.get("method", earlier.get("method")) != earlier.get("method"):
                merged[key] = value
                continue
            merged[key] = deep_merge(earlier, value)
        else:
            merged[key] = value
    return merged


def set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    try:
        data = yaml.safe_load(text)  # never yaml.load: a config must not run code
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, not {data!r}.")
    return data


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The settings models a field holds: itself, or the members of a union."""
    members = (annotation, *getattr(annotation, "__args__", ()))
    return [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]


def _field_path(loc: tuple[Any, ...], extra: bool = False) -> str:
    """Dotted key of an error location, without pydantic's union-branch labels.

    For a field typed ``int | Literal["auto"]`` pydantic reports one error per branch, at
    locations like ``(..., "latent_dim", "int")``, and a threshold rule's error sits under
    its tag (``(..., "threshold", "fpr", "rate")``): walk the models and keep only real
    keys. ``extra``: the last part is an unknown key, kept too.
    """
    models: list[type[BaseModel]] = [Settings]
    parts: list[str] = []
    for index, part in enumerate(loc):
        model = next((m for m in models if part in m.model_fields), None)
        if model is not None:
            parts.append(str(part))
            models = _models(model.model_fields[part].annotation)
            continue
        tagged = [m for m in models if _tag(m) == part]
        if tagged:
            models = tagged  # the branch of a discriminated union: not a key of its own
        elif not models and isinstance(part, int):
            parts.append(str(part))  # a list index
        else:
            if extra and index == len(loc) - 1:
                parts.append(str(part))
            break
    return ".".join(parts) or ".".join(map(str, loc))


def _tag(model: type[BaseModel]) -> Any:
    method = model.model_fields.get("method")
    return method.default if method is not None else None


def _describe(error: dict[str, Any]) -> str:
    key = _field_path(tuple(error["loc"]))
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        key = _field_path(tuple(error["loc"]), extra=True)
        return (
            f"unknown key '{key}' (value {value!r}); check the spelling against "
            "`vae-anomaly config-schema`"
        )
    allowed = error.get("ctx", {}).get("expected") or error["msg"]
    return f"key '{key}' has value {value!r}: {allowed}"


def _merge_problems(errors: list[dict[str, Any]]) -> str:
    """One message per key: union branches of the same field are joined with 'or'."""
    by_key: dict[str, list[str]] = {}
    for error in errors:
        text = _describe(error)
        key = text.split("'")[1]
        by_key.setdefault(key, []).append(text)
    merged = []
    for texts in by_key.values():
        first = texts[0]
        extra = [t.split(": ", 1)[1] for t in texts[1:] if ": " in t]
        merged.append(" or ".join([first, *extra]))
    return "; ".join(merged)


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of config layers: ``VAE_ANOMALY_CONFIG_DIR`` if set (it must exist: a
    mistyped folder would otherwise run on the built-in defaults without a word), else
    ``configs/`` in the working directory, which may be absent."""
    env = os.environ if environ is None else environ
    named = env.get(CONFIG_DIR_VARIABLE)
    if not named:
        return CONFIG_DIR
    root = Path(named)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "does not exist"
        raise ConfigError(
            f"{CONFIG_DIR_VARIABLE}={named} (from the environment) {what}; "
            "point it at a folder of config files or unset it"
        )
    return root


def default_files(job: str | None, environ: Mapping[str, str] | None = None) -> list[Path]:
    """base.yaml, the job's file and local.yaml, those of them that exist in the config
    folder (``config_dir``)."""
    root = config_dir(environ)
    names = ["base.yaml", *([f"{job}.yaml"] if job else []), "local.yaml"]
    return [root / name for name in names if (root / name).is_file()]


def load_settings(
    files: list[Path] | None = None,
    job: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Merge YAML ``files`` (default: the shipped layers for ``job``), env and overrides."""
    tree: dict[str, Any] = {}
    env = os.environ if environ is None else environ
    sources = files if files is not None else default_files(job, env)
    for path in sources:
        tree = deep_merge(tree, read_yaml(Path(path)))
    for variable, path in ENV_OVERRIDES.items():
        if env.get(variable):
            set_path(tree, path, env[variable])
    tree = deep_merge(tree, overrides or {})
    where = ", ".join(str(p) for p in sources) or "defaults"
    refuse_old_threshold_keys(tree, where)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        problems = _merge_problems(exc.errors())
        raise ConfigError(f"invalid configuration ({where}): {problems}") from None


def json_schema() -> dict[str, Any]:
    return Settings.model_json_schema()
