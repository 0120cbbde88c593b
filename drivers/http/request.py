"""One send as an HTTP request, and what the answer means, without I/O."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from drivers.base import (
    ChannelFault,
    OutgoingMessage,
    PermanentError,
    SendReceipt,
    TransientError,
)
from drivers.http import template
from drivers.http.common import Answer, basic_auth, public_hook_url, retry_after_s
from drivers.http.options import HttpOptions
from drivers.sms.segments import count_segments


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    form: list[tuple[str, str]] | None = None
    json: Any = None


def values(opt: HttpOptions, name: str, message: OutgoingMessage) -> dict[str, str]:
    dlr_url = public_hook_url(opt.public_base_url, name, "/dlr") if opt.public_base_url else ""
    encoding = opt.encoding_values.get(count_segments(message.text)[0], "")
    return {"to": message.destination, "to_digits": message.destination.lstrip("+"),
            "text": message.text, "encoding": encoding, "id": str(message.id),
            "attempt": str(message.attempt),
            "from": opt.sender, "username": opt.username, "password": opt.password,
            "api_key": opt.api_key, "dlr_url": dlr_url, "dlr_secret": opt.dlr_secret}


def build(opt: HttpOptions, name: str, message: OutgoingMessage) -> Request:
    v = values(opt, name, message)
    headers = {k: template.render(t, v) for k, t in opt.headers.items()}
    if opt.basic_auth:
        headers.update(basic_auth(opt.username, opt.password))
    form = [(k, template.render(t, v)) for k, t in opt.form.items()] if opt.form else None
    body = template.render_tree(opt.json_body, v) if opt.json_body is not None else None
    return Request(opt.method, template.render_url(opt.url, v),
                   [(k, template.render(t, v)) for k, t in opt.query.items()],
                   headers, form, body)


def interpret(opt: HttpOptions, answer: Answer, message: OutgoingMessage) -> SendReceipt:
    """The receipt of an accepted send, or the exception to raise."""
    doc = _json(answer)
    text = answer.text()
    if _accepted(opt, answer, doc, text):
        refs = _ids(opt, doc, text, message)
        if refs:
            return SendReceipt(provider_ref=refs[0], parts=len(refs),
                               part_refs=tuple(refs) if len(refs) > 1 else ())
    raise error(opt, answer, doc, text)


def _accepted(opt: HttpOptions, answer: Answer, doc: Any, text: str) -> bool:
    if answer.status not in opt.success_status:
        return False
    if opt.success_regex and not re.search(opt.success_regex, text):
        return False
    if opt.success_json_path:
        return str(template.first(doc, opt.success_json_path)) in opt.success_json_values
    return True


def _ids(opt: HttpOptions, doc: Any, text: str, message: OutgoingMessage) -> list[str]:
    if opt.id_from == "ours":
        return [str(message.id)]
    if opt.id_json_path:
        return [str(v) for v in template.lookup(doc, opt.id_json_path) if v not in (None, "")]
    found = re.search(opt.id_regex or "", text)
    if not found:
        return []
    groups = found.groupdict()
    return [groups["id"] if "id" in groups else found.group(1 if found.re.groups else 0)]


def error(opt: HttpOptions, answer: Answer, doc: Any, text: str
          ) -> ChannelFault | TransientError | PermanentError:
    code = _error_code(opt, doc, text)
    detail = _first_of(doc, opt.error_text_json_path)
    what = f"HTTP {answer.status}: {detail or text.strip()[:200] or 'no body'}"
    if (code is not None and code in opt.auth_codes) or answer.status in opt.auth_status:
        return ChannelFault.auth(what, code=code or str(answer.status))
    if code in opt.transient_codes or answer.status in opt.transient_status:
        return TransientError(what, code=code or str(answer.status),
                              retry_after_s=retry_after_s(answer.headers))
    if 200 <= answer.status < 300 and not code:
        # A 2xx we do not recognise as success (a matcher that does not fit
        # the provider) may well have gone out: retrying would send it again
        # and again, so it fails once, saying why.
        return PermanentError(f"answer not recognised as success (check success_regex, "
                              f"success_json_path, id paths): {what}", code="unrecognised")
    return PermanentError(what, code=code or str(answer.status))


def _error_code(opt: HttpOptions, doc: Any, text: str) -> str | None:
    value = _first_of(doc, opt.error_code_json_path)
    if value is not None:
        return value
    if opt.error_code_regex:
        found = re.search(opt.error_code_regex, text)
        if found:
            return found.group(1 if found.re.groups else 0)
    return None


def _first_of(doc: Any, paths: tuple[str, ...]) -> str | None:
    for path in paths:
        value = template.first(doc, path)
        if value not in (None, ""):
            return str(value)
    return None


def _json(answer: Answer) -> Any:
    try:
        return json.loads(answer.body) if answer.body else None
    except (ValueError, UnicodeDecodeError):
        return None
