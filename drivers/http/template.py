"""Placeholders in request templates and paths into JSON answers, without I/O.

`{to}` in a template is replaced by the value; nothing else in the string is
touched (Kannel's `%d` in a dlr-url, JSON punctuation). A path is dotted
keys and list indices, `*` for every item: `messages.0.message-id`,
`results.*.messageId`, `status.groupName`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

PLACEHOLDERS = frozenset({
    "to", "to_digits", "text", "encoding", "id", "attempt", "from", "username", "password",
    "api_key", "dlr_url", "dlr_secret"})
_NAME = re.compile(r"\{([a-z_]+)\}")


def names(template: str) -> set[str]:
    return set(_NAME.findall(template))


def unknown(templates: Iterable[str]) -> set[str]:
    """Placeholders used in `templates` that the driver does not fill."""
    found: set[str] = set()
    for template in templates:
        found |= names(template)
    return found - PLACEHOLDERS


def render(template: str, values: Mapping[str, str],
           escape: Callable[[str], str] = lambda v: v) -> str:
    return _NAME.sub(lambda m: escape(values.get(m.group(1), m.group(0))), template)


def render_url(template: str, values: Mapping[str, str]) -> str:
    # Every value is one path segment or one query value: escape it all.
    return render(template, values, lambda v: quote(v, safe=""))


def render_tree(node: Any, values: Mapping[str, str]) -> Any:
    """A JSON template: every string in it rendered, the structure kept."""
    if isinstance(node, str):
        return render(node, values)
    if isinstance(node, list):
        return [render_tree(item, values) for item in node]
    if isinstance(node, dict):
        return {key: render_tree(value, values) for key, value in node.items()}
    return node


def strings(node: Any) -> list[str]:
    """Every string in a JSON template (to check its placeholders at start)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    return []


def lookup(doc: Any, path: str) -> list[Any]:
    """Every value at `path` in `doc`; empty when the path leads nowhere."""
    nodes = [doc]
    for key in path.split("."):
        found: list[Any] = []
        for node in nodes:
            if isinstance(node, list):
                if key == "*":
                    found.extend(node)
                elif key.isdigit() and int(key) < len(node):
                    found.append(node[int(key)])
            elif isinstance(node, Mapping) and key in node:
                found.append(node[key])
        nodes = found
    return nodes


def first(doc: Any, path: str) -> Any:
    """The value of a field: a flat key (form parameters) or the first at a path."""
    if isinstance(doc, Mapping) and path in doc:
        return doc[path]
    found = lookup(doc, path)
    return found[0] if found else None
