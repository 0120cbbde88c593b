"""What every HTTP door does with what a caller sends: JSON and form bodies
read without a traceback, and secrets compared whatever bytes they carry.

A caller controls every byte of a request. A body nested 5,000 deep makes
`json.loads` raise RecursionError (not ValueError); an unknown charset in
Content-Type makes aiohttp's form reader raise LookupError; a header with
bytes that are not UTF-8 reaches us as text with lone surrogates, which
`str.encode()` refuses and `hmac.compare_digest` cannot compare when it is
not ASCII. Each of those is the caller's mistake, so each is a BadBody (a
400) or a mismatch (a 401/403), never an exception out of a handler.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

# Deeper than any provider's callback or any sane `data`; a document nested
# deeper would make later json.dumps/loads of it recurse near Python's limit.
MAX_JSON_DEPTH = 64


class BadBody(ValueError):
    """The request's body (or how it is labelled) can't be read: answer 400."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


def loads(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from a caller, or BadBody saying why not."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise BadBody(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as err:  # UnicodeDecodeError is a ValueError
        raise BadBody(f"malformed JSON: {err}") from None
    if _deeper_than(doc, max_depth):
        raise BadBody(f"JSON nested deeper than {max_depth} levels")
    return doc


def _deeper_than(doc: Any, limit: int) -> bool:
    # Iterative: a recursive walk would hit the very limit it checks for.
    stack = [(doc, 1)] if isinstance(doc, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


async def read_json(request: web.Request) -> Any:
    return loads(await request.read())


async def read_form(request: web.Request
                    ) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The form fields of a POST, or BadBody (unknown charset, bytes that are
    not in the declared charset, a broken multipart body)."""
    try:
        return await request.post()
    except LookupError:
        raise BadBody(f"unknown charset {request.charset!r} in Content-Type",
                      field="Content-Type") from None
    except ValueError as err:
        raise BadBody(f"malformed form body: {err}") from None


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time, for any text a caller can send. Header values that
    were not UTF-8 arrive surrogate-escaped; they are compared as the bytes
    they were (and so never match a configured secret)."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))
