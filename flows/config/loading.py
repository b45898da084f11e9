"""Reading the settings: YAML layers merged key by key, the environment, CLI overrides,
and validation errors turned into one line per key, naming where the bad value came from.

A config file is bounded before any tree is built from it: at most ``MAX_CONFIG_BYTES``,
``MAX_ALIASES`` alias uses and ``MAX_NODES`` values once aliases are expanded, so a file of
nested aliases (a "billion laughs") is refused in milliseconds instead of taking gigabytes.
Errors quote values as short excerpts (``flows.config.quoting``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from flows.config.base import ConfigError
from flows.config.quoting import excerpt
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
    text = _read_config_text(path)
    try:
        data = yaml.load(text, Loader=BoundedLoader)  # safe: a config must not run code
    except _TooLarge as exc:
        raise ConfigError(f"config file {path} {exc}") from None
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(
            f"config file {path} is not valid YAML: {excerpt(reason, 300)[1:-1]}"
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must hold a mapping at the top, not {excerpt(data)}."
        )
    return data


def _read_config_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; name a YAML file.") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB; a config "
            "file holds a few settings, not data."
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None


#: Bounds on a config file, checked before any value is built from it.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_NODES = 100_000


class _TooLarge(yaml.YAMLError):
    """The document exceeds a bound; the message completes "config file PATH ..."."""


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds on alias uses and on the expanded document.

    Aliases are counted as the composer meets them; the expanded size (each alias counted
    as the whole of what it names) is measured on the node graph before any Python object
    is built, in time linear in the file.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _TooLarge(
                    f"uses more than {MAX_ALIASES} YAML aliases (*name); write the values "
                    "out, a config file needs few if any."
                )
        return super().compose_node(parent, index)

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        size = 0 if node is None else _expanded_size(node)
        if size < 0:
            raise _TooLarge("holds a YAML alias inside the value it names (endless); remove it.")
        if size > MAX_NODES:
            raise _TooLarge(
                f"expands to more than {MAX_NODES:,} values through its YAML aliases; "
                "write the values out."
            )
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(root: yaml.Node) -> int:
    """Values in the document with every alias expanded (capped); -1 for a cycle."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in _children(node)), MAX_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in on_path:
            return -1  # an alias inside what it names: endless when expanded
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]


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


def _describe(error: dict[str, Any], origins: Mapping[str, str] | None = None) -> str:
    key = _field_path(tuple(error["loc"]))
    value = excerpt(error.get("input"))
    if error["type"] == "extra_forbidden":
        key = _field_path(tuple(error["loc"]), extra=True)
        return (
            f"unknown key '{key}' (value {value}{_origin(key, origins)}); check the "
            "spelling against `vae-anomaly config-schema`"
        )
    allowed = error.get("ctx", {}).get("expected") or error["msg"].removeprefix("Value error, ")
    return f"key '{key}' has value {value}{_origin(key, origins)}: {allowed}"


def _origin(key: str, origins: Mapping[str, str] | None) -> str:
    """Where the value of ``key`` was set: a file, the environment or the command line."""
    if not origins:
        return ""
    for path, origin in origins.items():
        if path == key or key.startswith(path + ".") or path.startswith(key + "."):
            return f", from {origin}"
    return ""


def _merge_problems(errors: list[dict[str, Any]], origins: Mapping[str, str] | None = None) -> str:
    """One message per key: union branches of the same field are joined with 'or'."""
    by_key: dict[str, list[str]] = {}
    for error in errors:
        text = _describe(error, origins)
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
    origins: dict[str, str] = {}  # dotted key -> the layer its value came from
    for path in sources:
        layer = read_yaml(Path(path))
        origins.update(dict.fromkeys(_leaf_keys(layer), str(path)))
        tree = deep_merge(tree, layer)
    for variable, path in ENV_OVERRIDES.items():
        if env.get(variable):
            set_path(tree, path, env[variable])
            origins[".".join(path)] = f"the environment variable {variable}"
    for key in _leaf_keys(overrides or {}):
        origins[key] = "the command line (or the flow's overrides)"
    tree = deep_merge(tree, overrides or {})
    where = ", ".join(str(p) for p in sources) or "defaults"
    refuse_old_threshold_keys(tree, where)
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        problems = _merge_problems(exc.errors(), origins)
        raise ConfigError(f"invalid configuration ({where}): {problems}") from None


def _leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.extend(_leaf_keys(value, dotted + ".") if isinstance(value, dict) else [dotted])
    return keys


def json_schema() -> dict[str, Any]:
    return Settings.model_json_schema()
