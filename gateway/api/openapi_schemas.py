"""Request and response bodies of the HTTP API, for its OpenAPI description
(gateway/api/openapi.py). Each mirrors what a handler checks or renders
(gateway/api/parse.py, render.py)."""

from __future__ import annotations

from typing import Any

from spool.base import State

Schema = dict[str, Any]
STATE_NAMES = [s.name for s in State]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def as_json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


# -- request bodies ----------------------------------------------------------------

TEXT200 = nullable("string", maxLength=200)
DURATION: Schema = {"anyOf": [
    {"type": "number", "exclusiveMinimum": 0, "maximum": 90 * 86400},
    {"type": "string", "pattern": r"^\s*(0*[1-9]\d*(\.\d+)?|0*\.\d*[1-9]\d*|0+\.\d*[1-9]\d*)"
                                  r"\s*(ms|s|m|h|d)?\s*$"}]}
# What a policy reads as "not set": null, false, 0, "" or an empty list or object.
NOTHING: Schema = {"anyOf": [{"enum": [None, False, 0, ""]},
                             {"type": "array", "maxItems": 0},
                             {"type": "object", "maxProperties": 0}]}
POLICY: Schema = {
    "type": "object", "additionalProperties": False,
    "description": "journey policy: tracked links, reminders, WhatsApp as the last step",
    "properties": {
        "track_links": {"type": "boolean"},
        "wait": {"description": "'4h', '90m', '2s' or seconds; at most 90 days", **DURATION},
        "link_ttl": {"anyOf": [*DURATION["anyOf"], NOTHING]},
        "sms_attempts": {"type": "integer", "minimum": 1, "maximum": 10},
        "retry_templates": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "whatsapp": {"anyOf": [NOTHING, {
            "type": "object", "required": ["template"], "properties": {
                "template": {"type": "string"}, "language": {"description": "default en"},
                "params": {"type": "array", "items": {"type": "string"}},
                "link_button": {"description": "true: the link's code is the URL button's "
                                               "suffix"}}}]},
        "whatsapp_fallback": {"description": "read from the campaign's policy only: "
                                             "{enabled, template, language, codes, ...}"},
    },
}
SUBMISSION: Schema = {
    "type": "object", "required": ["destination"], "additionalProperties": False,
    "properties": {
        "destination": {"description": "any spelling; stored as INVALID (7) when it is no number",
                        "anyOf": [{"type": "string", "minLength": 1, "maxLength": 64},
                                  {"type": "number"}]},
        "message": {"type": "string", "minLength": 1, "maxLength": 10000,
                    "description": "required unless kind is whatsapp"},
        "campaign": TEXT200, "agent": TEXT200,
        "priority": nullable("integer", minimum=-1_000_000, maximum=1_000_000),
        "data": nullable("object"),
        "idempotency_key": TEXT200,
        "smart": {"anyOf": [POLICY, {"type": "null"}]},
        "kind": {"type": "string", "enum": ["sms", "whatsapp"]},
        "whatsapp": {"description": "when kind is whatsapp: {type, <type>: {...}} as in the "
                                    "Cloud API; ignored otherwise"},
    },
    "if": {"required": ["kind"], "properties": {"kind": {"const": "whatsapp"}}},
    "then": {"required": ["whatsapp"], "properties": {"whatsapp": {
        "type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}}},
    "else": {"required": ["message"]},
}
LEGACY_FORM: Schema = {
    "type": "object", "required": ["destination", "message"],
    "properties": {
        "destination": {"type": "string", "minLength": 1, "maxLength": 64},
        "message": {"type": "string", "minLength": 1, "maxLength": 10000},
        "campaign": {"type": "string", "maxLength": 200},
        "agent": {"type": "string", "maxLength": 200},
        "priority": {"type": "string", "description": "-1000000 to 1000000; empty: none",
                     "pattern": r"^(\s*-?0*(1000000|[0-9]{1,6})\s*)?$"},
    },
}
SCHEDULE: Schema = {
    "type": "object", "additionalProperties": False, "required": ["timezone", "windows"],
    "properties": {
        "timezone": {"type": "string", "description": "IANA zone, e.g. America/Montevideo"},
        "windows": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "required": ["days", "start", "end"],
            "properties": {"days": {"description": "'*', 'mon-fri', 'sat', 'mon,wed' or a list",
                                    "anyOf": [{"type": "string"},
                                              {"type": "array", "items": {"type": "string"}}]},
                           "start": {"type": "string", "description": "HH:MM"},
                           "end": {"type": "string", "description": "HH:MM"}}}},
        "exceptions": {"type": "array", "items": {"type": "string", "format": "date"}},
    },
}
CAMPAIGN_CHANGES: Schema = {
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"}, "dncr_check": {"type": "boolean"},
        "channels": {"type": "array", "items": {"type": "string"},
                     "description": "names of configured channels (400 names the unknown)"},
        "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
        "time_between_ms": {"type": "integer", "minimum": 0, "maximum": 86_400_000},
        "in_doubt": {"type": "string", "enum": ["resend", "hold"]},
        "schedule": {"anyOf": [SCHEDULE, {"type": "null"}]},
        "out_of_time_message": nullable("string", maxLength=1000),
        "auto_replies": {"anyOf": [{"type": "null"}, {
            "type": "object", "additionalProperties": {"type": "string", "minLength": 1},
            "propertyNames": {"pattern": r"\S"}}]},
        "smart": {"anyOf": [POLICY, {"type": "null"}]},
    },
}
NEW_CAMPAIGN: Schema = {
    **CAMPAIGN_CHANGES, "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                   **CAMPAIGN_CHANGES["properties"]},
}
NUMBERS: Schema = {
    "type": "object", "required": ["destinations"],
    "properties": {"destinations": {"type": "array", "items": {"type": ["string", "number"]}},
                   "campaign": {"type": ["string", "null"], "maxLength": 200,
                                "description": "omitted: the global list (operator only)"}},
}
CSV_UPLOAD = {
    "text/csv": {"schema": {"type": "string", "minLength": 1}},
    # Only the `file` part: a part name no HTTP header can carry is refused (400).
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file"], "additionalProperties": False,
        "properties": {"file": {"type": "string", "format": "binary", "minLength": 1}}}},
}

# -- response bodies -----------------------------------------------------------------

TIME = {"type": "string", "description": "ISO-8601, UTC"}
TIME_OR_NULL = nullable("string")
STATE_FIELDS = {"state": {"type": "integer", "minimum": 0, "maximum": 9},
                 "state_name": {"type": "string", "enum": STATE_NAMES}}


def record(required: list[str], props: dict[str, Any]) -> Schema:
    return {"type": "object", "required": required, "properties": props}


ACCEPTED_ITEM = record(["id", "state", "state_name"], {
    "id": {"type": "integer"}, **STATE_FIELDS, "duplicate": {"type": "boolean"}})
MESSAGE = record(["id", "destination", "state", "state_name", "created_at"], {
    "id": {"type": "integer"}, "campaign": nullable("string"),
    "destination": {"type": "string"}, "message": {"type": "string"},
    "priority": {"type": "integer"}, **STATE_FIELDS, "channel": nullable("string"),
    "attempts": {"type": "integer"}, "provider_ref": nullable("string"),
    "error": nullable("string"), "agent": nullable("string"), "data": nullable("object"),
    "kind": {"type": "string", "enum": ["sms", "whatsapp"]}, "segments": {"type": "integer"},
    "cost": {"type": "number"}, "idempotency_key": nullable("string"),
    "created_at": TIME, "sent_at": TIME_OR_NULL, "delivered_at": TIME_OR_NULL,
    "next_attempt_at": TIME_OR_NULL})
EVENT = record(["at", "state", "state_name"], {
    "at": TIME, **STATE_FIELDS, "note": nullable("string"), "channel": nullable("string")})
MESSAGE_WITH_HISTORY = {"allOf": [ref("Message"), record(["history"], {
    "history": {"type": "array", "items": EVENT},
    "fallback": {"description": "WhatsApp utility fallback, for WhatsApp messages",
                 "anyOf": [{"type": "null"}, {"type": "object"}]}})]}
CAMPAIGN = record(["name", "enabled", "channels", "priority", "in_doubt"], {
    "name": {"type": "string"}, "enabled": {"type": "boolean"},
    "channels": {"type": "array", "items": {"type": "string"}}, "priority": {"type": "integer"},
    "in_doubt": {"type": "string", "enum": ["resend", "hold"]}, "dncr_check": {"type": "boolean"},
    "time_between_ms": {"type": "integer"}, "schedule": nullable("object"),
    "out_of_time_message": nullable("string"), "auto_replies": nullable("object"),
    "smart": nullable("object"), "created_at": TIME_OR_NULL})
INBOUND = record(["id", "channel", "sender", "text", "received_at"], {
    "id": {"type": "integer"}, "channel": {"type": "string"}, "sender": {"type": "string"},
    "recipient": {"type": "string"}, "text": {"type": "string"}, "received_at": TIME,
    "reply_to": nullable("integer"), "conversation": nullable("integer"),
    "action": nullable("string"), "data": nullable("object")})
CONVERSATION = record(["id", "customer", "channel"], {
    "id": {"type": "integer"}, "campaign": nullable("string"), "customer": {"type": "string"},
    "channel": {"type": "string"}, "agent": nullable("string"), "started_at": TIME,
    "last_at": TIME, "inbound": {"anyOf": [{"type": "integer"},
                                            {"type": "array", "items": ref("Inbound")}]}})
JOURNEY = record(["id", "destination", "state", "step", "links"], {
    "id": {"type": "integer"}, "campaign": nullable("string"),
    "destination": {"type": "string"}, "state": {"type": "string"}, "policy": {"type": "object"},
    "step": {"type": "integer"}, "note": nullable("string"), "next_at": TIME_OR_NULL,
    "created_at": TIME_OR_NULL, "clicked_at": TIME_OR_NULL,
    "links": {"type": "array", "items": record(["code", "short_url", "url"], {
        "code": {"type": "string"}, "short_url": {"type": "string"}, "url": {"type": "string"}})},
    "steps": {"type": "array", "items": {"type": "object"}},
    "clicks": record(["human", "bot"], {"human": {"type": "integer"},
                                         "bot": {"type": "integer"}}),
    "cost": {"type": "number"}, "currency": {"type": "string"}})


def page(key: str, item: Schema, after: Schema) -> Schema:
    return record([key, "next_after"], {key: {"type": "array", "items": item},
                                         "next_after": {"anyOf": [after, {"type": "null"}]}})


IMPORT_ERRORS = {"type": "array", "items": record(["line", "reason"], {
    "line": {"type": "integer"}, "reason": {"type": "string"}})}
MESSAGES_IMPORTED = record(["imported", "blocked", "invalid", "rejected", "errors"], {
    "file": {"type": "string"}, "imported": {"type": "integer"}, "blocked": {"type": "integer"},
    "invalid": {"type": "integer"}, "rejected": {"type": "integer"},
    "segments": {"type": "integer"}, "estimated_cost": {"type": "number"},
    "resumed_from_line": nullable("integer"), "errors": IMPORT_ERRORS})
NUMBERS_IMPORTED = record(["added", "valid", "rejected", "errors"], {
    "added": {"type": "integer"}, "valid": {"type": "integer"},
    "rejected": {"type": "integer"}, "errors": IMPORT_ERRORS})
DAILY_ROW = record(["date", "campaign", "total", "cost"], {
    "date": {"type": "string", "format": "date"}, "campaign": {"type": "string"},
    **{k: {"type": "integer"} for k in ("total", "processed", "not_processed", "other",
                                        "blocked", "sent", "delivered", "failed",
                                        "cancelled")},
    "cost": {"type": "number"}})
STATS = record(["generated_at", "campaigns", "channels", "node"], {
    "generated_at": TIME, "live": {"type": "boolean"},
    "campaigns": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    "channels": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    "chart": {}, "recent_failures": {"type": "array"}, "recent_clicks": {"type": "array"},
    "node": {"type": "string"}})
CSV = {"text/csv": {"schema": {"type": "string"}}}
