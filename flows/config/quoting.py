"""Quoting a value in an error or a note: never more than a short excerpt.

A value in a message may be a megabyte of text, or a config value built from nested YAML
aliases whose ``repr`` is hundreds of megabytes; a one-line error must stay one short line.
"""

from __future__ import annotations

from typing import Any

#: Longest excerpt of a value a message quotes.
EXCERPT_CHARS = 80


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` marks the cut)."""
    text = _bounded_repr(value, limit)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bounded_repr(value: Any, limit: int) -> str:
    """``repr`` of a container built only as far as the excerpt needs: the repr of a
    shared-alias tree is exponential in its depth."""
    if isinstance(value, dict):
        parts, size = [], 2
        for key, item in value.items():
            part = f"{_bounded_repr(key, limit)}: {_bounded_repr(item, limit)}"
            parts.append(part)
            size += len(part) + 2
            if size > limit:
                break
        return "{" + ", ".join(parts) + ("" if size <= limit else ", ...") + "}"
    if isinstance(value, list | tuple):
        parts, size = [], 2
        for item in value:
            part = _bounded_repr(item, limit)
            parts.append(part)
            size += len(part) + 2
            if size > limit:
                break
        return "[" + ", ".join(parts) + ("" if size <= limit else ", ...") + "]"
    text = repr(value)
    return text if len(text) <= limit * 2 else text[: limit * 2]
