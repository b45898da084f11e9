"""Reference sections generated from the code while the docs are built, so none can go stale.

mkdocs runs this file as a hook (``hooks:`` in ``mkdocs.yml``). A page asks for a generated
section with a marker line, ``<!-- generated: NAME -->``, and the hook replaces the line:

- ``cli-reference``: every subcommand of ``vae-anomaly`` with its options, defaults and help,
  read from the argparse parser (``flows.cli.build_parser``);
- ``config-reference``: every configuration key with its type, default, bounds and
  description, read from the settings' JSON schema (``flows.config.json_schema``);
- ``module-index``: every module of ``vae_core`` and ``flows`` with the first paragraph of
  its docstring, read from the source files without importing them.

Only those public entry points are read, so a new command, option, setting or module shows
up in the docs without touching them. A marker this file does not know fails the build.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
#: Packages listed by the module index, in this order.
PACKAGES = ("vae_core", "flows")
#: Usage lines are wrapped at a fixed width, not at the width of whoever builds the docs.
USAGE_WIDTH = 88

_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MARKDOWN_SPECIAL = re.compile(r"([\\*_\[\]|])")


# -- Markdown helpers ------------------------------------------------------------------
def _escape_plain(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def escape(text: str) -> str:
    """``text`` as literal Markdown in a table cell; code spans in it are kept as code."""
    text = " ".join(text.split())
    parts, last = [], 0
    for match in _CODE_SPAN.finditer(text):
        parts.append(_escape_plain(text[last : match.start()]))
        parts.append(match.group(0).replace("|", "&#124;"))
        last = match.end()
    parts.append(_escape_plain(text[last:]))
    return "".join(parts)


def code(text: str) -> str:
    """``text`` as an inline code span (a pipe would end the table cell)."""
    fence = "``" if "`" in text else "`"
    return f"{fence}{text.replace('|', '&#124;')}{fence}"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# -- CLI reference ---------------------------------------------------------------------
# argparse has no public way to walk a parser's arguments and subcommands; ``_actions`` and
# the action classes below have been stable since Python 3.2, and --help reads them too.
def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _expanded_help(action: argparse.Action, prog: str) -> str:
    """The help text as ``--help`` prints it (``%(default)s`` and the like filled in)."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    params: dict[str, Any] = {**vars(action), "prog": prog}
    params = {k: v for k, v in params.items() if v is not argparse.SUPPRESS}
    params = {k: getattr(v, "__name__", v) for k, v in params.items()}
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    return action.help % params


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return code(action.metavar or action.dest)
    if action.nargs == 0:
        return ", ".join(code(option) for option in action.option_strings)
    if action.metavar is not None:
        value = action.metavar
    elif action.choices is not None:
        value = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        value = action.dest.upper()
    return ", ".join(code(f"{option} {value}") for option in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    value = action.default
    if value in (None, argparse.SUPPRESS, False, [], ()) or action.nargs == 0:
        return ""
    return code(str(value))


def _option_rows(
    parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset()
) -> list[tuple[str, ...]]:
    """One row per argument, leaving out ``--help`` and the options named in ``skip``."""
    rows = []
    for action in parser._actions:
        if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS or skip.intersection(action.option_strings):
            continue
        repeat = " Repeatable." if isinstance(action, argparse._AppendAction) else ""
        help_text = escape(_expanded_help(action, parser.prog)) + repeat
        rows.append((_invocation(action), _default(action), help_text))
    return rows


def _usage(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = lambda prog: argparse.HelpFormatter(prog, width=USAGE_WIDTH)
    return parser.format_usage().strip()


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """Markdown for every subcommand of the parser (default: ``vae-anomaly``'s own)."""
    if parser is None:
        from flows.cli import build_parser

        parser = build_parser()
    # Options of the top-level parser are accepted after the command too (a parent parser
    # gives every subcommand a copy): list them once, here.
    shared = frozenset(o for action in parser._actions for o in action.option_strings)
    lines = ["## Global options {#global-options}", ""]
    lines += [escape(parser.description or ""), "", "```text", _usage(parser), "```", ""]
    lines += _table(("option", "default", "description"), _option_rows(parser)) + [""]
    for name, sub in _subcommands(parser).items():
        lines += [f"## `{parser.prog} {name}` {{#{name}}}", "", escape(sub.description or "")]
        lines += ["", "```text", _usage(sub), "```", ""]
        rows = _option_rows(sub, skip=shared)
        if rows:
            lines += _table(("argument", "default", "description"), rows)
        else:
            lines.append("No options besides the global ones.")
        lines.append("")
    return "\n".join(lines)


# -- configuration reference -----------------------------------------------------------
_BOUNDS = (
    ("minimum", ">="),
    ("exclusiveMinimum", ">"),
    ("maximum", "<="),
    ("exclusiveMaximum", "<"),
    ("minLength", "length >="),
)


def _ref_name(node: dict[str, Any]) -> str | None:
    ref = node.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _variants(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives of a union, nested unions flattened; ``[node]`` for a plain node."""
    for key in ("anyOf", "oneOf"):
        if key in node:
            return [leaf for variant in node[key] for leaf in _variants(variant)]
    return [node]


def _discriminator(node: dict[str, Any]) -> str | None:
    """The key that picks the variant of a discriminated union, wherever it is nested."""
    if "discriminator" in node:
        return node["discriminator"].get("propertyName")
    for key in ("anyOf", "oneOf"):
        for variant in node.get(key, ()):
            if found := _discriminator(variant):
                return found
    return None


def _type_text(node: dict[str, Any]) -> str:
    """The type of one schema node in words: ``integer >= 1``, ``"auto"``, ``section``."""
    if _ref_name(node):
        return "section"
    if "const" in node:
        return code(json.dumps(node["const"]))
    if "enum" in node:
        return "one of " + ", ".join(code(json.dumps(v)) for v in node["enum"])
    kind = node.get("type")
    if kind == "array":
        text = "list of " + _type_text(node.get("items", {}))
    elif kind is None:
        text = "any" if "anyOf" not in node and "oneOf" not in node else ""
    else:
        text = str(kind) + (f" ({node['format']})" if "format" in node else "")
    bounds = [f"{sign} {node[key]}" for key, sign in _BOUNDS if key in node]
    return " ".join([text, " and ".join(bounds)]).strip()


def _section_refs(node: dict[str, Any]) -> list[str]:
    return [name for v in _variants(node) if (name := _ref_name(v))]


def _default_text(prop: dict[str, Any], required: bool) -> str:
    if "default" not in prop:
        return "required" if required else ""
    value = prop["default"]
    if isinstance(value, dict):
        return "see below" if value else code("{}")
    return code(json.dumps(value))


Section = tuple[str, str, dict[str, Any], list[tuple[str, ...]]]


def _anchor(dotted: str, note: str = "") -> str:
    """The id of a section's heading: ``config-train-detector``, plus the variant if any."""
    anchor = "config-" + (dotted.replace(".", "-").replace("_", "-") or "top")
    if note:
        anchor += "-" + re.sub(r"[^a-z0-9]+", "-", note.lower()).strip("-")
    return anchor


def _nested(
    schema: dict[str, Any], prop: dict[str, Any], dotted: str
) -> list[tuple[dict[str, Any], str]]:
    """(model, note) of each section a key can hold; a union's variants are told apart by
    their discriminator's value (``method: iqr``)."""
    defs = schema.get("$defs", {})
    refs = _section_refs(prop)
    discriminator = _discriminator(prop) or ""
    sections = []
    for name in refs:
        note = ""
        if len(refs) > 1:
            chosen = defs[name].get("properties", {}).get(discriminator, {})
            note = f"{discriminator}: {chosen.get('const', name)}" if discriminator else name
        sections.append((defs[name], note))
    return sections


def _section_type(dotted: str, notes: list[str]) -> str:
    if notes == [""]:
        return f"section, see [{code(dotted)}](#{_anchor(dotted)})"
    links = [f"[{code(note)}](#{_anchor(dotted, note)})" for note in notes]
    return "one of the sections " + ", ".join(links)


def _config_sections(
    schema: dict[str, Any], model: dict[str, Any], path: str, note: str = ""
) -> Iterator[Section]:
    """(dotted path, note, model, rows) for ``model`` and, after it, each nested section."""
    rows, nested = [], []
    required = set(model.get("required", ()))
    for key, prop in model.get("properties", {}).items():
        dotted = f"{path}.{key}" if path else key
        sections = _nested(schema, prop, dotted)
        types = [_type_text(v) for v in _variants(prop)]
        if sections:
            link = _section_type(dotted, [n for _, n in sections])
            types = [link if t == "section" else t for t in types]
            nested += [(child, dotted, child_note) for child, child_note in sections]
        type_text = " or ".join(dict.fromkeys(t for t in types if t))
        description = escape(prop.get("description", ""))
        rows.append((code(dotted), type_text, _default_text(prop, key in required), description))
    yield path, note, model, rows
    for child, child_path, child_note in nested:
        yield from _config_sections(schema, child, child_path, child_note)


def config_reference(schema: dict[str, Any] | None = None) -> str:
    """Markdown for every key of the settings (default: ``flows.config.json_schema()``)."""
    if schema is None:
        from flows.config import json_schema

        schema = json_schema()
    lines: list[str] = []
    for path, note, model, rows in _config_sections(schema, schema, ""):
        heading = f"`{path}`" + (f" ({escape(note)})" if note else "") if path else "Sections"
        lines += [f"### {heading} {{#{_anchor(path, note)}}}", ""]
        if model.get("description") and path:
            lines += [escape(model["description"]), ""]
        lines += _table(("key", "type", "default", "description"), rows) + [""]
    return "\n".join(lines)


# -- module index ----------------------------------------------------------------------
def _summary(path: Path) -> str:
    """The first paragraph of a module's docstring, on one line."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except SyntaxError:
        doc = None
    return " ".join((doc or "").split("\n\n", 1)[0].split())


def module_index(root: Path) -> str:
    """Markdown tables of the modules under ``root``'s packages and what each is for."""
    lines: list[str] = []
    for package in PACKAGES:
        rows = []
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            rows.append((code(module), escape(_summary(path))))
        lines += [f"### `{package}` {{#modules-{package.replace('_', '-')}}}", ""]
        lines += _table(("module", "what it is for"), rows) + [""]
    return "\n".join(lines)


# -- the hook --------------------------------------------------------------------------
def generators(root: Path) -> dict[str, Callable[[], str]]:
    """Marker name -> the function that renders its section."""
    return {
        "cli-reference": cli_reference,
        "config-reference": config_reference,
        "module-index": lambda: module_index(root),
    }


def render_markers(markdown: str, root: Path, page: str = "page") -> str:
    """``markdown`` with every marker line replaced by its generated section."""
    known = generators(root)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in known:
            raise ValueError(f"{page}: unknown generated section {name!r}; known: {sorted(known)}")
        return known[name]()

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    from mkdocs.exceptions import PluginError

    root = Path(config["config_file_path"]).resolve().parent
    try:
        return render_markers(markdown, root, page.file.src_uri)
    except ValueError as exc:
        raise PluginError(str(exc)) from exc
