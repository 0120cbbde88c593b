"""No answer carries `Infinity` or `NaN`: they are not JSON.

Python's json writes them for non-finite floats, and strict parsers (every
browser's JSON.parse, Go, Java) then fail on the whole body. New input is
refused at the doors; this guards what was stored before that, or what a
future field lets through: such a number goes out as null, and the log
says where.
"""

from __future__ import annotations

import json
import math
from typing import Any

import structlog
from aiohttp import web

log = structlog.get_logger("smsgw.http")


async def guard(request: web.Request, response: web.StreamResponse) -> None:
    """aiohttp `on_response_prepare` hook: rewrite a JSON body holding a
    non-finite number. Costs a byte search unless one is there."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return
    body = response.body
    if not isinstance(body, bytes) or (b"Infinity" not in body and b"NaN" not in body):
        return
    seen: list[str] = []

    def constant(name: str) -> float:
        seen.append(name)
        return math.nan

    try:
        doc = json.loads(body, parse_constant=constant)
    except ValueError:
        return  # not ours to judge
    if seen:
        log.warning("http.non_finite_number", path=request.path, count=len(seen))
        fixed = json.dumps(finite(doc)).encode()
        response.body = fixed
        if "Content-Length" in response.headers:  # set before this hook runs
            response.headers["Content-Length"] = str(len(fixed))


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None."""
    stack = [value]
    while stack:
        node = stack.pop()
        items = (node.items() if isinstance(node, dict)
                 else enumerate(node) if isinstance(node, list) else ())
        for key, item in list(items):
            if isinstance(item, float) and not math.isfinite(item):
                node[key] = None
            elif isinstance(item, dict | list):
                stack.append(item)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
