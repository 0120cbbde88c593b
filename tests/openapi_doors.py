"""A test-only OpenAPI description of the doors the public one leaves out:
the dashboard's login, the provider hooks and the short-link redirect.

They are not an API anyone integrates with (providers call the hooks in
their own formats, the dashboard page calls its login), so they stay out of
`/api/v1/openapi.json`; this description exists so that schemathesis can
throw generated requests at them. Secrets that sit in a URL (the DLR token,
the Dinstar push token) are pinned to the right value so that bodies get
past the check and are parsed; signatures over bodies cannot be, so for
Twilio and Meta only what comes before the signature check is reached.
"""

from __future__ import annotations

from typing import Any

from tests.doors import DLR_SECRET, PUSH_TOKEN

_TEXT = {"type": "string"}
_ANY: dict[str, Any] = {}  # any JSON value: the door must cope
_ANSWERS = {"default": {"description": "any answer but a 5xx"}}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def _op(summary: str, *, body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": _ANSWERS}
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if params:
        op["parameters"] = params
    return op


def _param(where: str, name: str, schema: dict[str, Any], required: bool = False
           ) -> dict[str, Any]:
    return {"in": where, "name": name, "required": required or where == "path",
            "schema": schema}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _form(**props: Any) -> dict[str, Any]:
    return {"application/x-www-form-urlencoded": {"schema": _obj(**props)}}


_INFOBIP_REPORT = _obj(messageId=_TEXT, to=_TEXT, callbackData=_TEXT,
                       status=_obj(groupName=_TEXT, name=_TEXT), error=_obj(name=_TEXT))
_DINSTAR_PUSH = _obj(
    sn=_TEXT,
    sms_result={"type": "array", "items": _obj(
        port=_ANY, user_id=_ANY, number=_ANY, time=_ANY, status=_ANY, count=_ANY,
        succ_count=_ANY, ref_id=_ANY, imsi=_ANY)},
    sms_deliver_status={"type": "array", "items": _obj(
        port=_ANY, number=_ANY, time=_ANY, ref_id=_ANY, status_code=_ANY, imsi=_ANY)},
    sms={"type": "array", "items": _obj(
        incoming_sms_id=_ANY, port=_ANY, number=_ANY, smsc=_ANY, timestamp=_ANY, text=_ANY,
        imsi=_ANY)})
_META_CHANGE = _obj(field={"enum": ["messages", "user_preferences", "other"]}, value=_ANY)
_META_HOOK = _obj(object={"enum": ["whatsapp_business_account", "page"]},
                  entry={"type": "array", "items": _obj(
                      id=_TEXT, changes={"type": "array", "items": _META_CHANGE})})
_TWILIO_FORM = _form(MessageSid=_TEXT, MessageStatus=_TEXT, ErrorCode=_TEXT, From=_TEXT,
                     To=_TEXT, Body=_TEXT, NumSegments=_TEXT)
_TWILIO_SIGNATURE = _param("header", "X-Twilio-Signature", _TEXT)

PATHS: dict[str, Any] = {
    "/dashboard/login": {"post": _op("Log in", body=_json(_obj(user=_TEXT, password=_TEXT)))},
    "/dashboard/session": {"get": _op("Who is logged in")},
    "/dashboard/logout": {"post": _op("Log out")},
    "/Integra/resources/SMS/SendSMS": {"post": _op(
        "Legacy form, key-less from loopback", body=_form(
            destination=_TEXT, message=_TEXT, campaign=_TEXT, agent=_TEXT))},
    "/hooks/infobip/dlr": {
        "post": _op("Delivery reports (generic HTTP driver)",
                    params=[_param("query", "token", {"enum": [DLR_SECRET]}, True)],
                    body={**_json(_obj(results={"type": "array", "items": _INFOBIP_REPORT})),
                          **_form(messageId=_TEXT, status=_TEXT)}),
        "get": _op("A delivery report in the query", params=[
            _param("query", "token", {"enum": [DLR_SECRET, "wrong"]}, True),
            _param("query", "messageId", _TEXT), _param("query", "status", _TEXT)])},
    "/hooks/twilio/status": {"post": _op("Twilio status callback", body=_TWILIO_FORM,
                                         params=[_TWILIO_SIGNATURE])},
    "/hooks/twilio/inbound": {"post": _op("Twilio inbound SMS", body=_TWILIO_FORM,
                                          params=[_TWILIO_SIGNATURE])},
    "/hooks/whatsapp": {
        "get": _op("Meta's subscription check", params=[
            _param("query", "hub.mode", {"enum": ["subscribe", "other"]}),
            _param("query", "hub.challenge", _TEXT), _param("query", "hub.verify_token", _TEXT)]),
        "post": _op("Meta's webhook", body=_json(_META_HOOK),
                    params=[_param("header", "X-Hub-Signature-256", _TEXT)])},
    "/hooks/dinstar-a/{token}": {"post": _op(
        "A Dinstar gateway's push", body=_json(_DINSTAR_PUSH),
        params=[_param("path", "token", {"enum": [PUSH_TOKEN]})])},
    "/r/{code}": {"get": _op("A short link", params=[_param("path", "code", _TEXT)])},
}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "smsgw doors outside the public API (tests only)", "version": "1"},
    "paths": PATHS,
}
