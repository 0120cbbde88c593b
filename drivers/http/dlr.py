"""A provider's delivery-report callback as DeliveryReports, without I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.base import DeliveryReport
from drivers.http import template
from drivers.http.options import DlrOptions
from drivers.webio import same_secret


def authorised(dlr: DlrOptions, secret: str, params: Mapping[str, str],
               headers: Mapping[str, str]) -> bool:
    """The shared secret, when one is configured, in constant time."""
    if not secret:
        return True
    shown = ""
    if dlr.secret_header:
        shown = headers.get(dlr.secret_header, "")
    elif dlr.secret_param:
        shown = params.get(dlr.secret_param, "")
    return same_secret(shown, secret)


def reports(channel: str, dlr: DlrOptions, params: Mapping[str, str], doc: Any
            ) -> list[DeliveryReport]:
    """Every report in one callback: from its JSON body if it has one, else
    from its query and form parameters."""
    source: Any = doc if doc is not None else params
    items = template.lookup(source, dlr.items_path) if dlr.items_path else [source]
    if len(items) == 1 and isinstance(items[0], list):  # "results" names the list itself
        items = items[0]
    found = []
    for item in items:
        report = _report(channel, dlr, item)
        if report is not None:
            found.append(report)
    return found


def _report(channel: str, dlr: DlrOptions, item: Any) -> DeliveryReport | None:
    ref = _text(template.first(item, dlr.id_field))
    status = _text(template.first(item, dlr.status_field))
    if not ref or not status:
        return None
    failed_as = _text(template.first(item, dlr.failed_field)) if dlr.failed_field else status
    error_code = _text(template.first(item, dlr.error_field)) if dlr.error_field else ""
    destination = _text(template.first(item, dlr.destination_field)) \
        if dlr.destination_field else ""
    if destination.isdigit():
        destination = "+" + destination
    common: dict[str, Any] = {"destination": destination or None,
                              "detail": {"status": status}}
    if status in dlr.delivered_values:
        return DeliveryReport(channel, ref, True, **common)
    if failed_as in dlr.failed_values:
        error = f"delivery report: {status}" + (f" (error {error_code})" if error_code else "")
        return DeliveryReport(channel, ref, False, error=error,
                              error_code=error_code or None, **common)
    return DeliveryReport(channel, ref, False, final=False, **common)


def _text(value: Any) -> str:
    return "" if value is None else str(value)
