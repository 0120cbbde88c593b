"""A simulated channel: no hardware, real behaviour.

It takes time to send (`latency_ms`), fails at the configured rates
(transient or permanent), and reports delivery after `report_delay_ms`, so
the whole pipeline (retries, blocking, delivery reports) can be watched on
a laptop. `record_path` appends one JSON line per accepted send, flushed at
once, which is how tests count what "went out" across a SIGKILL.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import secrets
from pathlib import Path
from typing import IO, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from drivers.base import (
    ChannelEvents,
    DeliveryReport,
    Health,
    InboundMessage,
    OutgoingMessage,
    PermanentError,
    SendReceipt,
    TransientError,
)
from drivers.webio import read_form


class LoopbackOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sms", "whatsapp"] = "sms"
    latency_ms: float = Field(0.0, ge=0)
    latency_jitter_ms: float = Field(0.0, ge=0)
    transient_failure_rate: float = Field(0.0, ge=0, le=1)
    permanent_failure_rate: float = Field(0.0, ge=0, le=1)
    delivery_reports: bool = True
    report_delay_ms: float = Field(500.0, ge=0)
    undelivered_rate: float = Field(0.0, ge=0, le=1)
    # WhatsApp simulation: templates with these names are reported failed
    # with `undelivered_code` (e.g. 131049, the marketing cap).
    undelivered_templates: tuple[str, ...] = ()
    undelivered_code: str | None = None
    concurrency: int = Field(16, ge=1)
    record_path: Path | None = None
    seed: int | None = None


class LoopbackChannel:
    def __init__(self, name: str, options: LoopbackOptions, events: ChannelEvents) -> None:
        self.name = name
        self.kind = options.kind
        self.concurrency = options.concurrency
        self._opt = options
        self._events = events
        self._rng = random.Random(options.seed)
        self._refs = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._record: IO[str] | None = None
        self._reports: set[asyncio.Task[None]] = set()
        self._closed = False
        self.sent = 0

    async def start(self) -> None:
        if self._opt.record_path is not None:
            self._opt.record_path.parent.mkdir(parents=True, exist_ok=True)
            self._record = open(self._opt.record_path, "a", encoding="utf-8")  # noqa: SIM115

    async def send(self, message: OutgoingMessage) -> SendReceipt:
        if self._closed:
            raise TransientError("channel closed", code="closed")
        delay = self._opt.latency_ms + self._rng.uniform(0, self._opt.latency_jitter_ms)
        if delay:
            await asyncio.sleep(delay / 1000)
        roll = self._rng.random()
        if roll < self._opt.permanent_failure_rate:
            raise PermanentError("simulated permanent failure", code="sim-permanent")
        if roll < self._opt.permanent_failure_rate + self._opt.transient_failure_rate:
            raise TransientError("simulated transient failure", code="sim-transient")
        ref = f"{self._prefix}-{next(self._refs)}"
        self.sent += 1
        if self._record is not None:
            line = {"id": message.id, "to": message.destination, "channel": self.name,
                    "ref": ref, "attempt": message.attempt}
            self._record.write(json.dumps(line) + "\n")
            self._record.flush()  # survives SIGKILL: the kernel holds the page
        if self._opt.delivery_reports:
            self._schedule_report(ref, self._template_fails(message))
        return SendReceipt(provider_ref=ref)

    def _template_fails(self, message: OutgoingMessage) -> bool:
        template = (message.data.get("whatsapp") or {}).get("template") or {}
        return template.get("name") in self._opt.undelivered_templates

    def _schedule_report(self, ref: str, fail: bool) -> None:
        delivered = not fail and self._rng.random() >= self._opt.undelivered_rate
        task = asyncio.get_running_loop().create_task(
            self._report_later(ref, delivered), name=f"loopback-dlr:{self.name}")
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report_later(self, ref: str, delivered: bool) -> None:
        await asyncio.sleep(self._opt.report_delay_ms / 1000)
        error = None if delivered else "simulated: undeliverable"
        await self._events.report(DeliveryReport(
            self.name, ref, delivered, error,
            error_code=None if delivered else self._opt.undelivered_code))

    async def handle_hook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        """`POST /hooks/{name}/inbound` (from, to, text, id): a customer writes.

        A simulated channel has no carrier behind it; this is how a person
        (or a test) plays the customer. Only loopback callers are accepted.
        """
        if subpath != "/inbound" or request.method != "POST":
            raise web.HTTPNotFound()
        # A reverse proxy on this host makes every caller 127.0.0.1: a request
        # that names a forwarded client came from elsewhere.
        if request.remote not in ("127.0.0.1", "::1") or any(
                h in request.headers for h in ("X-Forwarded-For", "Forwarded", "X-Real-IP")):
            raise web.HTTPForbidden(reason="loopback inbound is accepted from this host only")
        form = await read_form(request)
        sender = str(form.get("from", ""))
        text = str(form.get("text", "") or form.get("button", ""))
        if not sender or not text:
            return web.json_response({"error": "from and text are required",
                                      "field": "from" if not sender else "text"}, status=400)
        ref = str(form.get("id", "")) or None
        # `button`: the customer tapped a reply button with this payload.
        button = str(form.get("button", ""))
        data = {"type": "button", "reply": {"payload": button}} if button else {}
        stored = await self._events.inbound(InboundMessage(
            self.name, sender, str(form.get("to", "")), text, provider_ref=ref, data=data))
        return web.json_response({"id": stored})

    async def close(self) -> None:
        self._closed = True
        for task in list(self._reports):
            task.cancel()
        if self._reports:
            await asyncio.gather(*self._reports, return_exceptions=True)
        if self._record is not None:
            self._record.close()
            self._record = None

    def health(self) -> Health:
        return Health(up=not self._closed, detail={"sent": self.sent})

    # The hook takes only loopback callers (a test's or an operator's own tools).
    hook_auth_missing: str | None = None

    @property
    def hook_name(self) -> str:
        return self.name


def build(name: str, options: LoopbackOptions, events: ChannelEvents) -> list[LoopbackChannel]:
    return [LoopbackChannel(name, options, events)]
