"""The OpenAPI 3.1 description of the HTTP API, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from aiohttp import web

routes = web.RouteTableDef()

_ERROR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": desc}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    return out


_ERRORS = {
    "400": _resp("Malformed request; `field` names the culprit", _ERROR),
    "401": _resp("Missing or wrong X-Api-Key", _ERROR),
    "413": _resp("Body too large", _ERROR),
    "422": _resp("Unknown campaign", _ERROR),
    "503": _resp("Storage unavailable or spool full; see Retry-After", _ERROR),
}
_NOT_FOUND = {"404": _resp("No such message for this tenant", _ERROR)}
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
_NAME = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]

_INBOUND_FILTERS = [{"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("start", "end", "origin", "campaign", "agent", "after", "limit")]

SUBMISSION = {
    "type": "object", "required": ["destination"],
    "properties": {
        "destination": {"type": "string", "maxLength": 64},
        "message": {"type": "string", "minLength": 1, "maxLength": 10000},
        "campaign": {"type": "string"}, "priority": {"type": "integer"},
        "agent": {"type": "string"}, "data": {"type": "object"},
        "idempotency_key": {"type": "string", "maxLength": 200},
        "smart": {"type": "object", "description": "journey policy overriding the campaign's"},
        "kind": {"type": "string", "enum": ["sms", "whatsapp"]},
        "whatsapp": {"type": "object", "description": "the WhatsApp payload when kind is "
                     "whatsapp: {type, <type>: {...}} as in the Cloud API"},
    },
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "smsgw", "version": "1"},
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"}, "field": {"type": "string"}}},
            "Submission": SUBMISSION,
            "Message": {"type": "object", "properties": {
                "id": {"type": "integer"}, "state": {"type": "integer"},
                "state_name": {"type": "string"}, "destination": {"type": "string"},
                "history": {"type": "array", "items": {"type": "object"}}}},
        },
    },
    "security": [{"apiKey": []}],
    "paths": {
        "/Integra/resources/SMS/SendSMS": {"post": {
            "summary": "Legacy form endpoint; key-less from server.legacy_open_networks",
            "requestBody": {"content": {"application/x-www-form-urlencoded": {
                "schema": {"type": "object", "required": ["destination", "message"],
                           "properties": {k: {"type": "string"} for k in
                                          ("destination", "message", "campaign", "agent")}}}}},
            "responses": {"200": _resp("Stored", {"type": "object", "properties": {
                "id": {"type": "integer"}, "state": {"type": "integer"}}}), **_ERRORS}}},
        "/api/v1/messages": {
            "post": {"summary": "Submit one message or {messages: [...]} (up to 1000)",
                     "requestBody": {"required": True, "content": {"application/json": {
                         "schema": {"oneOf": [
                             {"$ref": "#/components/schemas/Submission"},
                             {"type": "object", "required": ["messages"], "properties": {
                                 "messages": {"type": "array", "maxItems": 1000, "items": {
                                     "$ref": "#/components/schemas/Submission"}}}}]}}}},
                     "responses": {"202": _resp("Accepted", {"type": "object", "properties": {
                         "messages": {"type": "array"},
                         "queue_depth_ahead": {"type": "integer"}}}), **_ERRORS}},
            "get": {"summary": "List messages (keyset pagination with `after`)",
                    "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}}
                                   for n in ("campaign", "state", "since", "after", "limit")],
                    "responses": {"200": _resp("A page", {"type": "object"}), **_ERRORS}}},
        "/api/v1/messages/{id}": {
            "get": {"parameters": _ID, "responses": {
                "200": _resp("The message with its state history",
                             {"$ref": "#/components/schemas/Message"}), **_NOT_FOUND}},
            "delete": {"summary": "Cancel an unprocessed message (state 8)", "parameters": _ID,
                       "responses": {"200": _resp("Cancelled"), **_NOT_FOUND,
                                     "409": _resp("Already processed", _ERROR)}}},
        "/api/v1/messages/{id}/release": {"post": {
            "summary": "Release a held (UNCONFIRMED) message for sending", "parameters": _ID,
            "responses": {"200": _resp("Released"), **_NOT_FOUND,
                          "409": _resp("Not held", _ERROR)}}},
        "/api/v1/campaigns": {
            "get": {"responses": {"200": _resp("Campaigns of the tenant")}},
            "post": {"responses": {"201": _resp("Created"), **_ERRORS,
                                   "409": _resp("Exists", _ERROR)}}},
        "/api/v1/campaigns/{name}": {
            "get": {"parameters": _NAME, "responses": {"200": _resp("The campaign")}},
            "patch": {"parameters": _NAME, "responses": {"200": _resp("Updated")}}},
        "/api/v1/campaigns/{name}/start": {"post": {"parameters": _NAME,
                                                    "responses": {"200": _resp("Started")}}},
        "/api/v1/campaigns/{name}/stop": {"post": {"parameters": _NAME,
                                                   "responses": {"200": _resp("Stopped")}}},
        "/api/v1/campaigns/{name}/messages": {"delete": {
            "summary": "Cancel every unprocessed message of the campaign", "parameters": _NAME,
            "responses": {"200": _resp("Count cancelled")}}},
        "/api/v1/blacklist": {
            "get": {"responses": {"200": _resp("Numbers on a list")}},
            "post": {"responses": {"200": _resp("Added"), **_ERRORS}},
            "delete": {"responses": {"200": _resp("Removed"), **_ERRORS}}},
        "/api/v1/inbound": {"get": {
            "summary": "Inbound messages of the tenant", "parameters": _INBOUND_FILTERS,
            "responses": {"200": _resp("A page"), **_ERRORS}}},
        "/api/v1/conversations": {"get": {
            "summary": "Conversations (one customer, one campaign)",
            "parameters": _INBOUND_FILTERS, "responses": {"200": _resp("A page"), **_ERRORS}}},
        "/api/v1/conversations/{id}": {"get": {
            "parameters": _ID, "responses": {"200": _resp("The conversation and its inbound"),
                                             **_NOT_FOUND}}},
        "/api/v1/conversations/{id}/reply": {"post": {
            "summary": "An agent's answer, sent on the channel the customer wrote to",
            "parameters": _ID,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["message"],
                "properties": {"message": {"type": "string"}, "agent": {"type": "string"}}}}}},
            "responses": {"202": _resp("Queued"), **_NOT_FOUND, **_ERRORS}}},
        "/api/v1/journeys/{id}": {"get": {
            "summary": "A journey with every step, its cost and clicks", "parameters": _ID,
            "responses": {"200": _resp("The journey"), **_NOT_FOUND}}},
        "/api/v1/journeys/{id}/cancel": {"post": {
            "parameters": _ID, "responses": {"200": _resp("Cancelled"), **_NOT_FOUND,
                                             "409": _resp("Already ended", _ERROR)}}},
        "/api/v1/reports/cost": {"get": {
            "summary": "Cost of sent messages per campaign and channel kind",
            "parameters": [{"name": n, "in": "query", "schema": {"type": "string"}}
                           for n in ("campaign", "since", "until")],
            "responses": {"200": _resp("Totals"), **_ERRORS}}},
        "/r/{code}": {"get": {
            "security": [], "summary": "Short link: 302 to the original URL",
            "parameters": [{"name": "code", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"302": {"description": "Redirect"},
                          "404": {"description": "Unknown or expired link"},
                          "429": {"description": "Too many unknown links"}}}},
        "/healthz": {"get": {"security": [], "responses": {"200": _resp("Alive")}}},
        "/readyz": {"get": {"security": [], "responses": {"200": _resp("Ready"),
                                                          "503": _resp("Not ready")}}},
    },
}


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)
