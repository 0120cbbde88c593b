"""The OpenAPI 3.1 description of the tenant-facing HTTP API, served at /api/v1/openapi.json.

Hand-written, and held to the running daemon by tests/test_schemathesis.py:
a status, a parameter or a response shape missing here fails the suite.
The dashboard's own endpoints (`/dashboard/...`), provider callbacks
(`/hooks/...`) and the operator's `/metrics` are not part of this contract.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.openapi_schemas import (
    ACCEPTED_ITEM,
    CAMPAIGN,
    CAMPAIGN_CHANGES,
    CONVERSATION,
    CSV,
    CSV_UPLOAD,
    DAILY_ROW,
    INBOUND,
    JOURNEY,
    LEGACY_FORM,
    MESSAGE,
    MESSAGE_WITH_HISTORY,
    MESSAGES_IMPORTED,
    NEW_CAMPAIGN,
    NUMBERS,
    NUMBERS_IMPORTED,
    POLICY,
    STATE_NAMES,
    STATS,
    SUBMISSION,
    TEXT200,
    TIME,
    Schema,
    as_json,
    nullable,
    page,
    record,
    ref,
)

routes = web.RouteTableDef()


def _resp(desc: str, schema: Schema | None = None, *, retry_after: bool = False) -> Schema:
    out: Schema = {"description": desc}
    if schema is not None:
        out["content"] = as_json(schema)
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds to wait",
                                          "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
    return out


_ERROR = ref("Error")
# Every authenticated call can meet these: the key, the per-tenant rate
# limit, and storage that is away (SQLite locked, PostgreSQL down).
_COMMON = {
    "401": _resp("Missing or wrong X-Api-Key", _ERROR),
    "429": _resp("Rate limit of the tenant exceeded", _ERROR, retry_after=True),
    "503": _resp("Storage unavailable or the spool full", _ERROR, retry_after=True),
}
_BAD = {"400": {
    "description": "Malformed request; `field` names the culprit. A request line or header "
                   "over 8 KB is refused by the HTTP parser, in plain text",
    "content": {**as_json(_ERROR), "text/plain": {"schema": {"type": "string"}}}}}
_BODY = {**_BAD, "413": _resp("Body larger than server.max_body_bytes", _ERROR)}
_UNKNOWN_CAMPAIGN = {"422": _resp("Unknown campaign", _ERROR)}
_CONFLICT = {"409": _resp("Wrong state for this change; `state` says which", _ERROR)}


def _not_found(what: str) -> dict[str, Any]:
    return {"404": _resp(f"No such {what} for this tenant", _ERROR)}


def _op(summary: str, responses: dict[str, Any], *, params: list[Schema] | None = None,
        body: Schema | None = None, **extra: Any) -> Schema:
    out: Schema = {"summary": summary, "responses": {**responses, **_COMMON}, **extra}
    if params:
        out["parameters"] = params
    if body is not None:
        out["requestBody"] = {"required": True, "content": body}
    return out


# -- parameters ------------------------------------------------------------------------

_INT64_MAX = 2**63 - 1
_ID = [{"name": "id", "in": "path", "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": _INT64_MAX}}]
_NAME = [{"name": "name", "in": "path", "required": True,
          "schema": {"type": "string", "minLength": 1, "maxLength": 200}}]


def _query(name: str, schema: Schema, desc: str = "", *, empty_is_absent: bool = True
           ) -> Schema:
    # `?since=` reads as no `since` at all: an empty value is always allowed.
    if empty_is_absent:
        schema = {"anyOf": [schema, {"const": ""}]} if "anyOf" not in schema else {
            **schema, "anyOf": [*schema["anyOf"], {"const": ""}]}
    out: Schema = {"name": name, "in": "query", "schema": schema}
    if desc:
        out["description"] = desc
    return out


_WHEN = {"description": "ISO-8601 date-time (UTC when no offset is given) or unix seconds",
         # 1970 to 2999 (gateway/api/parse.py); the pattern keeps a date-time's
         # year where no offset can push it out of that range.
         "anyOf": [{"type": "number", "minimum": 0, "maximum": 32_503_680_000},
                   {"type": "string", "format": "date-time",
                    "pattern": "^(197[1-9]|19[89][0-9]|2[0-8][0-9]{2}|29[0-8][0-9]|299[0-8])-"}]}
_CAMPAIGN_Q = _query("campaign", {"type": "string", "maxLength": 200},
                     "a campaign of the caller's (422 when it has none of that name)")
_STATE_Q = _query("state", {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9},
                                      {"type": "string", "enum": STATE_NAMES}]},
                  "state code or name (names in any case)")


def _limit(hi: int) -> Schema:
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": hi})


_AFTER_ID = _query("after", {"type": "integer", "minimum": 0, "maximum": 2**62},
                   "the `next_after` of the previous page")
_INBOUND_FILTERS = [_query("start", _WHEN), _query("end", _WHEN),
                    _query("origin", {"type": "string"}, "sender's number"),
                    _CAMPAIGN_Q, _query("agent", {"type": "string"}),
                    _AFTER_ID, _limit(1000)]
_REPORT_FILTERS = [_CAMPAIGN_Q, _STATE_Q, _query("from", _WHEN), _query("to", _WHEN)]
_DAILY_FILTERS = [*_REPORT_FILTERS,
                  _query("tz", {"type": "string", "minLength": 1, "maxLength": 64},
                         "IANA time zone of the days (UTC)", empty_is_absent=False)]

# -- paths -------------------------------------------------------------------------

_MESSAGES = {
    "/Integra/resources/SMS/SendSMS": {"post": _op(
        "Legacy form door: one message; key-less from server.legacy_open_networks",
        {"200": _resp("Stored", ACCEPTED_ITEM), **_BODY, **_UNKNOWN_CAMPAIGN},
        body={"application/x-www-form-urlencoded": {"schema": LEGACY_FORM}},
        security=[{}, {"apiKey": []}])},
    "/api/v1/messages": {
        "post": _op(
            "Submit one message, or {messages: [...]} (up to intake.max_batch, 1,000)",
            {"202": _resp("Stored; the ids in order, and the queue ahead of them", {
                **record(["messages", "queue_depth_ahead"], {
                    "messages": {"type": "array", "items": ACCEPTED_ITEM},
                    "queue_depth_ahead": {"type": "integer"}}),
                "description": "a single submission also gets its id, state and state_name "
                               "at the top level"}),
             **_BODY, **_UNKNOWN_CAMPAIGN,
             "409": _resp("An idempotency key already used for a different request; an "
                          "identical retry gets the original (202, duplicate)", _ERROR)},
            body=as_json({"oneOf": [
                {**ref("Submission")},
                {**record(["messages"], {"messages": {
                    "type": "array", "minItems": 1, "maxItems": 1000,
                    "items": ref("Submission")}}), "additionalProperties": False}]})),
        "get": _op("List messages, newest last (keyset pagination with `after`)",
                   {"200": _resp("A page", page("messages", ref("Message"),
                                                 {"type": "integer"})),
                    **_BAD, **_UNKNOWN_CAMPAIGN},
                   params=[_CAMPAIGN_Q, _STATE_Q, _query("since", _WHEN), _AFTER_ID,
                           _limit(1000)])},
    "/api/v1/messages/{id}": {
        "get": _op("The message with its state history",
                   {"200": _resp("Found", MESSAGE_WITH_HISTORY), **_not_found("message")},
                   params=_ID),
        "delete": _op("Cancel an unprocessed message (state 8)",
                      {"200": _resp("Cancelled", ref("Message")), **_not_found("message"),
                       **_CONFLICT}, params=_ID)},
    "/api/v1/messages/{id}/release": {"post": _op(
        "Release a held UNCONFIRMED message for sending",
        {"200": _resp("Released", ref("Message")), **_not_found("message"), **_CONFLICT},
        params=_ID)},
    "/api/v1/messages/import": {"post": _op(
        "Import a CSV of messages (campaign;destination;message;priority), as the spool folder",
        {"200": _resp("Summary; rejected rows with their line", MESSAGES_IMPORTED), **_BAD,
         "413": _resp("Upload larger than server.max_upload_bytes", _ERROR)},
        body=CSV_UPLOAD)},
}

_CAMPAIGNS = {
    "/api/v1/campaigns": {
        "get": _op("Campaigns of the tenant", {"200": _resp("All of them", record(
            ["campaigns"], {"campaigns": {"type": "array", "items": ref("Campaign")}}))}),
        "post": _op("Create a campaign", {"201": _resp("Created", ref("Campaign")), **_BODY,
                                          "409": _resp("A campaign of that name exists",
                                                       _ERROR)},
                    body=as_json(NEW_CAMPAIGN))},
    "/api/v1/campaigns/{name}": {
        "get": _op("One campaign", {"200": _resp("Found", ref("Campaign")),
                                    **_not_found("campaign")}, params=_NAME),
        "patch": _op("Change a campaign's settings",
                     {"200": _resp("Updated", ref("Campaign")), **_BODY,
                      **_not_found("campaign")},
                     params=_NAME, body=as_json(CAMPAIGN_CHANGES))},
    "/api/v1/campaigns/{name}/start": {"post": _op(
        "Enable a campaign: its messages are claimed again",
        {"200": _resp("Started", ref("Campaign")), **_not_found("campaign")}, params=_NAME)},
    "/api/v1/campaigns/{name}/stop": {"post": _op(
        "Disable a campaign: nothing more is claimed",
        {"200": _resp("Stopped", ref("Campaign")), **_not_found("campaign")}, params=_NAME)},
    "/api/v1/campaigns/{name}/messages": {"delete": _op(
        "Cancel every unprocessed message of the campaign",
        {"200": _resp("How many", record(["cancelled"], {"cancelled": {"type": "integer"}})),
         **_not_found("campaign")}, params=_NAME)},
}

_BLACKLIST_SCOPE = {**_BAD, **_UNKNOWN_CAMPAIGN}
_BLACKLIST = {
    "/api/v1/blacklist": {
        "get": _op("Numbers on a campaign's list (the global list: operator only)",
                   {"200": _resp("A page", page("destinations", {"type": "string"},
                                                 {"type": "string"})),
                    **_BLACKLIST_SCOPE},
                   params=[_CAMPAIGN_Q, _query("after", {"type": "string"},
                                               "the `next_after` of the previous page"),
                           _query("scope", {"type": "string", "maxLength": 300,
                                            "pattern": "^(whatsapp_marketing|sender_stop):"},
                                  "`whatsapp_marketing:<channel>`: who stopped marketing "
                                  "messages on that WhatsApp channel; `sender_stop:<channel>`:"
                                  " who unsubscribed from that sender at the provider "
                                  "(operator only; `campaign` is then ignored)"),
                           _limit(10_000)]),
        "post": _op("Add numbers", {"200": _resp("How many were new", record(
            ["added"], {"added": {"type": "integer"}})), **_BODY, **_UNKNOWN_CAMPAIGN},
            body=as_json(NUMBERS)),
        "delete": _op("Remove numbers", {"200": _resp("How many were listed", record(
            ["removed"], {"removed": {"type": "integer"}})), **_BODY, **_UNKNOWN_CAMPAIGN},
            body=as_json(NUMBERS))},
    "/api/v1/blacklist/import": {"post": _op(
        "Import a CSV of numbers (phone;campaign)",
        {"200": _resp("Summary", NUMBERS_IMPORTED), **_BAD,
         "413": _resp("Upload larger than server.max_upload_bytes", _ERROR)},
        body=CSV_UPLOAD)},
}

_INBOUND = {
    "/api/v1/inbound": {"get": _op(
        "Inbound messages of the tenant",
        {"200": _resp("A page", page("inbound", ref("Inbound"), {"type": "integer"})),
         **_BAD, **_UNKNOWN_CAMPAIGN}, params=_INBOUND_FILTERS)},
    "/api/v1/conversations": {"get": _op(
        "Conversations (one customer, one campaign)",
        {"200": _resp("A page", page("conversations", ref("Conversation"),
                                      {"type": "integer"})),
         **_BAD, **_UNKNOWN_CAMPAIGN}, params=_INBOUND_FILTERS)},
    "/api/v1/conversations/{id}": {"get": _op(
        "A conversation with its inbound messages",
        {"200": _resp("Found", ref("Conversation")), **_not_found("conversation")},
        params=_ID)},
    "/api/v1/conversations/{id}/reply": {"post": _op(
        "An agent's answer, sent on the channel the customer wrote to",
        {"202": _resp("Queued", ACCEPTED_ITEM), **_not_found("conversation"), **_BODY,
         "422": _resp("Neither the conversation nor the tenant has a campaign", _ERROR)},
        params=_ID, body=as_json(record(["message"], {
            "message": {"type": "string", "minLength": 1, "maxLength": 10000},
            "agent": TEXT200})))},
}

_JOURNEYS = {
    "/api/v1/journeys/{id}": {"get": _op(
        "A journey with every step, its cost and clicks",
        {"200": _resp("Found", ref("Journey")), **_not_found("journey")}, params=_ID)},
    "/api/v1/journeys/{id}/cancel": {"post": _op(
        "End a journey: its queued reminders are cancelled",
        {"200": _resp("Cancelled", ref("Journey")), **_not_found("journey"), **_CONFLICT},
        params=_ID)},
    "/r/{code}": {"get": {
        "security": [], "summary": "Short link: 302 to the original URL",
        "parameters": [{"name": "code", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {
            "302": {"description": "Redirect", "headers": {
                "Location": {"required": True, "schema": {"type": "string"}}}},
            "404": {"description": "Unknown or expired link",
                    "content": {"text/html": {"schema": {"type": "string"}}}},
            "429": {"description": "Too many unknown links from this client",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
}

_REPORTS = {
    "/api/v1/reports/cost": {"get": _op(
        "Cost of sent messages per campaign and channel kind",
        {"200": _resp("Totals", record(["currency", "lines", "total"], {
            "currency": {"type": "string"}, "total": {"type": "number"},
            "lines": {"type": "array", "items": record(["kind", "messages", "cost"], {
                "campaign": nullable("string"), "kind": {"type": "string"},
                "messages": {"type": "integer"}, "cost": {"type": "number"}})}})),
         **_BAD, **_UNKNOWN_CAMPAIGN},
        params=[_CAMPAIGN_Q, _query("since", _WHEN), _query("until", _WHEN)])},
    "/api/v1/reports/messages.csv": {"get": _op(
        "Every matching message as CSV (;-separated), streamed",
        {"200": {"description": "The rows, header first", "content": CSV}, **_BAD,
         **_UNKNOWN_CAMPAIGN}, params=_REPORT_FILTERS)},
    "/api/v1/reports/daily": {"get": _op(
        "Counts and cost per local day and campaign (92 days at most; the last 7 by default)",
        {"200": _resp("The days", record(["from", "to", "tz", "days"], {
            "from": TIME, "to": TIME, "tz": {"type": "string"},
            "days": {"type": "array", "items": DAILY_ROW}})),
         **_BAD, **_UNKNOWN_CAMPAIGN}, params=_DAILY_FILTERS)},
    "/api/v1/reports/daily.csv": {"get": _op(
        "The daily report as CSV",
        {"200": {"description": "The days, header first", "content": CSV}, **_BAD,
         **_UNKNOWN_CAMPAIGN}, params=_DAILY_FILTERS)},
    "/api/v1/stats": {"get": _op(
        "Campaigns with their counters and why they are not sending, channel health; "
        "without a key, every tenant (loopback or server.metrics_token only)",
        {"200": _resp("The picture", STATS)},
        security=[{"apiKey": []}, {"metricsToken": []}, {}])},
}

_HEALTH = {
    "/healthz": {"get": {"security": [], "summary": "Liveness: the event loop answers",
                         "responses": {"200": _resp("Alive", record(["status"], {
                             "status": {"const": "ok"}}))}}},
    "/readyz": {"get": {"security": [],
                        "summary": "Readiness: storage reachable and writable, a channel up",
                        "responses": {"200": _resp("Ready", ref("Readiness")),
                                      "503": _resp("Not ready", ref("Readiness"))}}},
    "/api/v1/openapi.json": {"get": {"security": [], "summary": "This description",
                                     "responses": {"200": _resp("OpenAPI 3.1",
                                                                {"type": "object"})}}},
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "smsgw", "version": "1"},
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "metricsToken": {"type": "http", "scheme": "bearer",
                             "description": "server.metrics_token"}},
        "schemas": {
            "Error": record(["error"], {"error": {"type": "string"},
                                         "field": {"type": "string"},
                                         "state": nullable("string")}),
            "Submission": SUBMISSION, "Policy": POLICY, "Message": MESSAGE,
            "Campaign": CAMPAIGN, "Inbound": INBOUND, "Conversation": CONVERSATION,
            "Journey": JOURNEY,
            # problems and channels_up: for operators only (this host, or the token).
            "Readiness": record(["ready"], {
                "ready": {"type": "boolean"},
                "problems": {"type": "array", "items": {"type": "string"}},
                "channels_up": {"type": "array", "items": {"type": "string"}}}),
        },
    },
    "security": [{"apiKey": []}],
    "paths": {**_MESSAGES, **_CAMPAIGNS, **_BLACKLIST, **_INBOUND, **_JOURNEYS, **_REPORTS,
              **_HEALTH},
}


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
