"""The documentation: a short README whose links resolve, and reference sections generated
from the code (the CLI parser, the settings schema, the modules' docstrings).

The site itself is built with ``mkdocs build --strict`` by ``make test``; these tests cover
what that build cannot see (the README lives outside ``docs/``) and the generators' output.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

import pytest
import yaml
from pydantic import BaseModel, Field

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _load_hook()


def _prose(markdown: str) -> str:
    """``markdown`` without its fenced code blocks, where brackets are not links."""
    return _FENCE.sub("", markdown)


def relative_links(markdown: str) -> list[str]:
    """Link targets that point into the repository (no scheme, not a mail address)."""
    prose = _prose(markdown)
    targets = _INLINE_LINK.findall(prose) + _REFERENCE_LINK.findall(prose)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    return {github_anchor(h) for h in _HEADING.findall(_prose(markdown))}


# -- README ----------------------------------------------------------------------------
def test_readme_is_at_most_250_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, or heading in a Markdown file, is missing."""
    broken = []
    for link in relative_links(page.read_text(encoding="utf-8")):
        path, _, fragment = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif fragment and target.suffix == ".md":
            if fragment not in anchors(target.read_text(encoding="utf-8")):
                broken.append(f"{link}: no heading with the id {fragment!r}")
    return broken


def test_every_relative_link_in_the_readme_resolves():
    links = relative_links(README.read_text(encoding="utf-8"))
    assert any(link.startswith("docs/") for link in links), "the README links no docs page"
    assert not broken_links(README), "\n".join(broken_links(README))


def test_the_link_check_reports_missing_files_and_headings(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Bad input: what happens\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# The `vae_core` library\n\n"
        "[ok](docs/page.md#bad-input-what-happens) [top](#the-vae_core-library) "
        "[web](https://example.org/x.md) [gone](docs/missing.md) "
        "[wrong](docs/page.md#no-such-heading)\n\n```\n[in code](x.md)\n```\n"
    )
    assert broken_links(readme) == [
        "docs/missing.md: no such file",
        "docs/page.md#no-such-heading: no heading with the id 'no-such-heading'",
    ]


def test_the_readme_gives_the_two_make_commands_that_the_makefile_has():
    text = README.read_text(encoding="utf-8")
    blocks = "\n".join(match.group(0) for match in _FENCE.finditer(text))
    commands = set(re.findall(r"^make ([\w-]+)", blocks, re.MULTILINE))
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    assert {"demo", "test"} <= commands
    assert commands <= targets, f"README names make targets the Makefile lacks: {commands}"


# -- the site's pages ------------------------------------------------------------------
def _nav_pages(nav: Any) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return [page for item in nav for page in _nav_pages(item)]


def test_every_page_is_in_the_navigation_and_every_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages


def test_every_marker_names_a_generator_and_every_generator_is_used_once():
    found = [
        name
        for page in DOCS.rglob("*.md")
        for name in reference.MARKER.findall(page.read_text(encoding="utf-8"))
    ]
    assert sorted(found) == sorted(reference.generators(ROOT))


def test_an_unknown_marker_fails():
    with pytest.raises(ValueError, match="unknown generated section 'nope'"):
        reference.render_markers("<!-- generated: nope -->\n", ROOT, "page.md")


# -- CLI reference ---------------------------------------------------------------------
def test_the_cli_reference_lists_every_command_and_option():
    from flows.cli import build_parser

    parser = build_parser()
    rendered = reference.cli_reference(parser)
    subcommands = reference._subcommands(parser)
    assert subcommands, "the parser has no subcommands"
    for name, sub in subcommands.items():
        assert f"{{#{name}}}" in rendered
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in rendered, f"{name} {option} is not in the reference"
    assert "%(" not in rendered


def test_the_cli_reference_renders_options_as_help_would():
    parser = argparse.ArgumentParser(prog="tool", description="a tool")
    parser.add_argument("--verbose", action="store_true", help="say more.")
    commands = parser.add_subparsers(dest="command")
    sub = commands.add_parser("run", description="run | it")
    sub.add_argument("data", metavar="DATA", help="input <path>.")
    sub.add_argument("--mode", choices=("a", "b"), default="a", help="Default: %(default)s.")
    sub.add_argument("--tag", action="append", default=[], help="a *tag*.")
    sub.add_argument("--out", required=True, help="output.")
    rendered = reference.cli_reference(parser)
    assert "| `--verbose` |  | say more. |" in rendered
    assert "## `tool run` {#run}" in rendered
    assert "run \\| it" in rendered
    assert "| `DATA` | required | input &lt;path&gt;. |" in rendered
    assert "| `--mode {a,b}` | `a` | Default: a. |" in rendered
    assert "| `--tag TAG` |  | a \\*tag\\*. Repeatable. |" in rendered
    assert "| `--out OUT` | required | output. |" in rendered


# -- configuration reference -----------------------------------------------------------
def _leaf_defaults(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, default) of every setting, read from the models, not from the schema."""
    leaves = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        annotation = field.annotation
        nested = [
            a
            for a in (annotation, *getattr(annotation, "__args__", ()))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        for sub in nested:
            leaves += _leaf_defaults(sub, f"{dotted}.")
        if not nested or (not field.is_required() and field.default is None):
            default = None if field.is_required() else field.get_default()
            leaves.append((dotted, default))
    return leaves


def _rows(rendered: str, key: str) -> list[str]:
    return [line for line in rendered.splitlines() if line.startswith(f"| `{key}` |")]


def test_the_config_reference_lists_every_key_with_its_default():
    from flows.config import Settings, json_schema

    rendered = reference.config_reference(json_schema())
    leaves = _leaf_defaults(Settings)
    assert len(leaves) > 30
    for key, default in leaves:
        rows = _rows(rendered, key)
        assert rows, f"{key} is not in the configuration reference"
        if default is not None and not isinstance(default, BaseModel):
            shown = f"`{json.dumps(default, default=str)}`"
            assert any(shown in row for row in rows), f"{key}: default {shown} not shown"


class _Iqr(BaseModel):
    """Tukey's fence."""

    method: Literal["iqr"] = "iqr"
    factor: float = Field(3.0, gt=0, description="fence width, in | IQRs")


class _Share(BaseModel):
    method: Literal["contamination"]
    share: float = Field(0.05, gt=0, lt=0.5)


class _Detector(BaseModel):
    threshold: Annotated[_Iqr | _Share, Field(discriminator="method")] = _Iqr()
    sizes: list[int] | Literal["auto"] = "auto"


class _Top(BaseModel):
    detector: _Detector = _Detector()
    labels: _Share | None = None
    path: str


def test_the_config_reference_renders_unions_sections_and_bounds():
    rendered = reference.config_reference(_Top.model_json_schema())
    assert "| `path` | string | required |  |" in rendered
    assert "| `detector` | section, see [`detector`](#config-detector) | see below |  |" in rendered
    assert '| `detector.sizes` | list of integer or `"auto"` | `"auto"` |  |' in rendered
    assert "### `detector.threshold` (method: iqr) {#config-detector-threshold-method-iqr}" in (
        rendered
    )
    assert "### `detector.threshold` (method: contamination)" in rendered
    assert (
        "| `detector.threshold` | one of the sections "
        "[`method: iqr`](#config-detector-threshold-method-iqr), "
        "[`method: contamination`](#config-detector-threshold-method-contamination) |"
    ) in rendered
    assert "| `detector.threshold.factor` | number > 0 | `3.0` | fence width, in \\| IQRs |" in (
        rendered
    )
    assert "| `detector.threshold.share` | number > 0 and < 0.5 | `0.05` |  |" in rendered
    assert "Tukey's fence." in rendered
    assert "[`labels`](#config-labels) or null | `null`" in rendered


# -- module index ----------------------------------------------------------------------
def test_the_module_index_lists_every_module():
    rendered = reference.module_index(ROOT)
    for package in reference.PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            assert f"| `{module}` |" in rendered, f"{module} is not in the module index"


def test_the_module_index_gives_the_first_paragraph_of_each_docstring(tmp_path):
    for package in reference.PACKAGES:
        (tmp_path / package).mkdir()
    (tmp_path / "vae_core" / "thing.py").write_text(
        '"""Reads ``<rows>`` in\nbatches.\n\nDetails nobody needs here."""\n', encoding="utf-8"
    )
    (tmp_path / "flows" / "empty.py").write_text("x = 1\n", encoding="utf-8")
    rendered = reference.module_index(tmp_path)
    assert "| `vae_core.thing` | Reads ``<rows>`` in batches. |" in rendered
    assert "| `flows.empty` |  |" in rendered
    assert "Details" not in rendered
