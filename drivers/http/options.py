"""Configuration of the generic HTTP provider driver (`driver = "http"`).

A request template (method, URL, query, form or JSON body, headers), a
success matcher, an error classification and an optional delivery-report
mapping. Secrets are top-level keys (`password`, `api_key`, `dlr_secret`)
so `SMSGW_CHANNELS__<name>__PASSWORD=...` can supply them; templates refer
to them as `{password}`, `{api_key}`, `{dlr_secret}`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.http import template


class DlrOptions(BaseModel):
    """Where a provider's delivery report holds what, at `/hooks/{name}/dlr`.

    Fields are form/query parameter names or paths into a JSON body; a
    status in `delivered_values` settles the message as delivered, one in
    `failed_values` (read from `failed_field`, else `status_field`) as failed,
    anything else is an intermediate report that changes nothing.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_field: str
    status_field: str
    delivered_values: tuple[str, ...]
    failed_values: tuple[str, ...] = ()
    failed_field: str | None = None
    error_field: str | None = None
    destination_field: str | None = None
    # One callback carrying several reports (Infobip's `results`).
    items_path: str | None = None
    # Where the caller shows `dlr_secret`: a query/form parameter or a header.
    secret_param: str | None = None
    secret_header: str | None = None


class HttpOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sms", "whatsapp"] = "sms"
    method: Literal["GET", "POST", "PUT"] = "POST"
    url: str = Field(pattern=r"^https?://")
    query: dict[str, str] = {}
    form: dict[str, str] | None = None
    json_body: Any = None
    headers: dict[str, str] = {}
    # Values for the placeholders of the same name ({from} is `sender`).
    sender: str = ""
    username: str = ""
    password: str = ""
    api_key: str = ""
    basic_auth: bool = False
    # Where the provider reaches this gateway: gives {dlr_url}.
    public_base_url: str | None = Field(None, pattern=r"^https?://")
    dlr_secret: str = ""
    # {encoding}: how this provider names GSM-7 and UCS-2 text (Kannel's
    # coding 0/2, Vonage's type text/unicode).
    encoding_values: dict[Literal["gsm7", "ucs2"], str] = {"gsm7": "gsm7", "ucs2": "ucs2"}

    # The answer: success needs a status from the list, the regex (if any)
    # to match the body, and the JSON field (if any) to hold an accepted value.
    success_status: tuple[int, ...] = (200, 201, 202)
    success_regex: str | None = None
    success_json_path: str | None = None
    success_json_values: tuple[str, ...] = ()
    # The provider's id for the message: regex group `id` (or 1), or a JSON
    # path (`*` for one id per part); "ours" when it gives none (Kannel) and
    # reports come back carrying our {id}.
    id_regex: str | None = None
    id_json_path: str | None = None
    id_from: Literal["response", "ours"] = "response"
    # Paths tried in order: providers put errors in different places for an
    # HTTP error and for a refusal inside a 200 (Infobip).
    error_code_json_path: tuple[str, ...] = ()
    error_text_json_path: tuple[str, ...] = ()
    error_code_regex: str | None = None
    transient_status: tuple[int, ...] = (408, 425, 429, 500, 502, 503, 504)
    transient_codes: tuple[str, ...] = ()
    # Credentials refused (Kannel's "403 Authorization failed", a provider's
    # code inside a 200): a channel fault, so the channel rests and the
    # queue waits, uncharged, instead of every message failing.
    auth_status: tuple[int, ...] = (401, 403)
    auth_codes: tuple[str, ...] = ()

    request_timeout_s: float = Field(30.0, gt=0)
    concurrency: int = Field(8, ge=1)
    dlr: DlrOptions | None = None

    @field_validator("error_code_json_path", "error_text_json_path", mode="before")
    @classmethod
    def _paths(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("success_regex", "id_regex", "error_code_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)  # re.error names the problem
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HttpOptions:
        if self.form is not None and self.json_body is not None:
            raise ValueError("form and json_body: choose one body")
        used = [self.url, *self.query.values(), *self.headers.values(),
                *(self.form or {}).values(), *template.strings(self.json_body)]
        bad = template.unknown(used)
        if bad:
            raise ValueError(f"unknown placeholders {sorted(bad)}; known: "
                             f"{', '.join(sorted(template.PLACEHOLDERS))}")
        if any("dlr_url" in template.names(t) for t in used) and not self.public_base_url:
            raise ValueError("{dlr_url} needs public_base_url")
        if self.id_from == "response" and not (self.id_regex or self.id_json_path):
            raise ValueError("id_regex or id_json_path is required unless id_from = 'ours'")
        return self
