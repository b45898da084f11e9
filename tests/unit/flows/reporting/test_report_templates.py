"""The report's Jinja2 templates: escaping on, unknown names fatal, one template per section."""

from __future__ import annotations

import re

import pytest
from jinja2 import UndefinedError

from flows.reporting import page
from flows.reporting.report import SECTION_IDS


def test_every_value_written_by_a_template_is_escaped() -> None:
    template = page.environment().from_string('<p title="{{ text }}">{{ text }}</p>')
    rendered = template.render(text="<b onclick=\"x('y')\">&</b>")
    assert "<b" not in rendered
    assert rendered.count("&lt;b onclick=&#34;x(&#39;y&#39;)&#34;&gt;&amp;&lt;/b&gt;") == 2


def test_a_name_the_template_does_not_get_is_an_error() -> None:
    environment = page.environment()
    with pytest.raises(UndefinedError, match="missing"):
        environment.from_string("{{ missing }}").render()
    with pytest.raises(UndefinedError, match="no_such_field"):
        environment.from_string("{{ data.no_such_field }}").render(data=object())


def test_every_template_compiles_and_each_section_has_its_own() -> None:
    environment = page.environment()
    names = environment.list_templates()
    assert names and all(name.endswith((".html.j2", ".js.j2")) for name in names)
    for name in names:
        environment.get_template(name)  # a syntax error raises here
    ids = {}
    for name in (n for n in names if n.endswith(".html.j2")):
        source = (page.TEMPLATE_DIR / name).read_text(encoding="utf-8")
        ids.update({found: name for found in re.findall(r'<section id="([^"]+)"', source)})
    assert sorted(ids) == sorted(SECTION_IDS)
    assert all(ids[section] == f"{section}.html.j2" for section in SECTION_IDS)
