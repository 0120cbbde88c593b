"""A Dinstar UC/DWG GSM gateway on loopback: a real aiohttp server speaking
the "new version" HTTP API (paths, JSON keys, error codes, Basic or Digest)
as docs/dinstar.md describes it. Each port sends one SMS at a time, taking
`latency_s` per part; results go SENDING -> SENT_OK / FAILED, then one
delivery status per part (TP-Status) and DELIVERED; results, statuses and
inbound SMS are pushed once, unsigned, to `push_url`. Faults: ports
unregistered or failing, numbers failing or refused, wrong credentials,
HTTP errors, hangs.

Standalone: `python -m drivers.simulators.dinstar --port 8099 --ports 8
--push-url http://127.0.0.1:8080/hooks/dinstar-a`; `/_sim/...` lets a person
inject inbound SMS and faults (see `_control_routes`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from drivers.http.simkit import LoopbackServer
from drivers.sms.segments import count_segments

_NUMBER = re.compile(r"^\+?\d{1,24}$")
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')
REALM = "Web Server"


def now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def parts_of(text: str, encoding: str) -> int:
    if encoding == "gsm-7bit":
        return count_segments(text)[1]
    units = len(text.encode("utf-16-be", "replace")) // 2
    return 1 if units <= 70 else -(-units // 67)


@dataclass
class SimSms:
    user_id: int | None
    number: str
    port: int
    text: str
    task_id: int
    count: int
    report: bool
    status: str = "SENDING"
    time: str = field(default_factory=now_text)
    succ_count: int = 0
    ref_id: int = 0

    def result(self) -> dict[str, Any]:
        return {"port": self.port, "user_id": self.user_id, "number": self.number,
                "time": self.time, "status": self.status, "count": self.count,
                "succ_count": self.succ_count, "ref_id": self.ref_id, "imsi": ""}


@dataclass
class SimPort:
    index: int
    number: str
    imsi: str
    reg: str = "REGISTER_OK"
    signal: int = 24
    queue: asyncio.Queue[SimSms] = field(default_factory=asyncio.Queue)
    next_ref: int = 0
    sent: int = 0
    failed: int = 0
    busy_s: float = 0.0
    last_end: float | None = None
    gaps_s: list[float] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        return {"port": self.index, "type": "GSM", "reg": self.reg, "number": self.number,
                "imsi": self.imsi, "signal": self.signal, "slot": 255}


class DinstarSimulator:
    def __init__(self, ports: int = 8, *, username: str = "admin", password: str = "admin",
                 auth: str = "basic", latency_s: float = 1.0, dlr_delay_s: float = 0.2,
                 dlr_code: int = 0, push_url: str | None = None, host: str = "127.0.0.1",
                 port: int = 0, sn: str = "DSIM-0000-0000-0001") -> None:
        self.username, self.password, self.auth = username, password, auth
        self.latency_s, self.dlr_delay_s, self.dlr_code = latency_s, dlr_delay_s, dlr_code
        self.push_url = push_url
        self.push_kinds = {"sms", "sms_result", "sms_deliver_status"}
        self.sn = sn
        self.ports = [SimPort(i, f"+59899{100000 + i}", f"7480{i:011d}") for i in range(ports)]
        # faults
        self.http_status: int | None = None
        self.fail_numbers: set[str] = set()  # sends to them end FAILED
        self.fail_ports: set[int] = set()  # registered, but every send FAILED (no credit)
        self.reject_numbers: set[str] = set()  # send_sms answers 400
        self.dlr_codes: dict[str, int] = {}  # TP-Status per number
        self._released = asyncio.Event()
        self._released.set()
        # records
        self.sms: list[SimSms] = []
        self.deliveries: list[dict[str, Any]] = []
        self.inbox: list[dict[str, Any]] = []
        self.pushes: list[dict[str, Any]] = []
        self.requests = 0
        self._nonce = secrets.token_hex(16)
        self._task_ids = iter(range(1, 1 << 31))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._host, self._port = host, port
        self._server: LoopbackServer | None = None
        self.url = ""

    # lifecycle ---------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application(middlewares=[self._gate])
        app.add_routes(self._api_routes() + _control_routes(self))
        self._server = LoopbackServer(app, host=self._host, port=self._port)
        self.url = await self._server.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._workers = [asyncio.create_task(self._radio(p), name=f"sim-port-{p.index}")
                         for p in self.ports]
        return self.url

    async def close(self) -> None:
        self._released.set()
        for task in [*self._workers, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._workers, *self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.close()
        if self._session is not None:
            await self._session.close()

    # faults ------------------------------------------------------------------
    def set_port(self, index: int, reg: str = "REGISTER_OK") -> None:
        """`reg="NO_SIM"` / `"UNREGISTER"`: the port stops sending."""
        self.ports[index].reg = reg

    def hang(self, on: bool = True) -> None:
        """Requests are held without an answer until `hang(False)`."""
        if on:
            self._released.clear()
        else:
            self._released.set()

    def inject_sms(self, port: int, number: str, text: str) -> int:
        sms_id = len(self.inbox) + 1
        item = {"incoming_sms_id": sms_id, "port": port, "number": number,
                "smsc": "+59899000000", "timestamp": now_text(), "text": text,
                "imsi": self.ports[port].imsi}
        self.inbox.append({**item, "read": False})
        self._push("sms", [item])
        return sms_id

    # HTTP --------------------------------------------------------------------
    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        self.requests += 1
        await self._released.wait()
        if self.http_status is not None:
            return web.Response(status=self.http_status, text="simulated failure")
        if not self._authorized(request):
            challenge = (f'Basic realm="{REALM}"' if self.auth == "basic" else
                         f'Digest realm="{REALM}", nonce="{self._nonce}", qop="auth", '
                         f'algorithm=MD5')
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        try:
            return await handler(request)
        except _Malformed:
            return self._answer(400)

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return secrets.compare_digest(header, f"Basic {token}")
        if not header.startswith("Digest "):
            return False
        p = {k: quoted or bare for k, quoted, bare in _PARAM.findall(header[7:])}

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{self.username}:{REALM}:{self.password}")
        ha2 = md5(f"{request.method}:{request.path_qs}")
        expected = md5(f"{ha1}:{self._nonce}:{p.get('nc')}:{p.get('cnonce')}:auth:{ha2}")
        return (p.get("username") == self.username and p.get("nonce") == self._nonce
                and p.get("uri") == request.path_qs
                and secrets.compare_digest(p.get("response", ""), expected))

    def _api_routes(self) -> list[web.RouteDef]:
        return [web.post("/api/send_sms", self._send_sms),
                web.post("/api/query_sms_result", self._query_result),
                web.post("/api/query_sms_deliver_status", self._query_deliver),
                web.post("/api/query_incoming_sms", self._query_incoming),
                web.get("/api/get_port_info", self._port_info),
                web.get("/api/stop_sms", self._stop_sms),
                web.route("*", "/api/query_sms_in_queue", self._in_queue)]

    def _answer(self, code: int, **extra: Any) -> web.Response:
        return web.json_response({"error_code": code, "sn": self.sn, **extra})

    async def _send_sms(self, request: web.Request) -> web.Response:
        body = await _json(request)
        params, text = body.get("param"), body.get("text")
        if not isinstance(params, list) or not params or not isinstance(text, str):
            return self._answer(400)
        if len(params) > 128 or len(text.encode()) > 1500:
            return self._answer(413)
        ports = body.get("port") or [p.index for p in self.ports]
        if not all(isinstance(p, int) and 0 <= p < len(self.ports) for p in ports):
            return self._answer(400)
        if not all(isinstance(p, dict) and _NUMBER.match(str(p.get("number", "")))
                   and p["number"] not in self.reject_numbers for p in params):
            return self._answer(400)
        ready = [p for p in ports if _registered(self.ports[p].reg)]
        if not ready:
            return self._answer(550)
        task_id = next(self._task_ids)
        encoding = body.get("encoding", "unicode")
        for i, param in enumerate(params):
            content = _fill(text, param.get("text_param") or [])
            sms = SimSms(param.get("user_id"), param["number"], ready[i % len(ready)], content,
                         task_id, parts_of(content, encoding),
                         body.get("request_status_report", True) is not False)
            self.sms.append(sms)
            self.ports[sms.port].queue.put_nowait(sms)
        return web.json_response({"error_code": 202, "sn": self.sn, "task_id": task_id,
                                  "sms_in_queue": self._queued()})

    async def _query_result(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if len(body.get("user_id") or []) > 32 or len(body.get("number") or []) > 32:
            return self._answer(413)
        ids = body.get("user_id")
        found = [s.result() for s in self.sms if (not ids or s.user_id in ids)
                 and _matches(s.result(), body)]
        return self._answer(200, result=found)

    async def _query_deliver(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if len(body.get("number") or []) > 32:
            return self._answer(413)
        return self._answer(200, result=[d for d in self.deliveries if _matches(d, body)])

    async def _query_incoming(self, request: web.Request) -> web.Response:
        body = await _json(request)
        after, flag = int(body.get("incoming_sms_id") or 0), body.get("flag", "unread")
        ports = body.get("port")
        found = [m for m in self.inbox if m["incoming_sms_id"] > after
                 and (not ports or m["port"] in ports)
                 and (flag == "all" or m["read"] == (flag == "read"))]
        for message in found:
            message["read"] = True
        unread = sum(not m["read"] for m in self.inbox)
        return self._answer(200, sms=[{k: v for k, v in m.items() if k != "read"}
                                      for m in found],
                            read=len(self.inbox) - unread, unread=unread)

    async def _port_info(self, request: web.Request) -> web.Response:
        wanted = request.query.get("port")
        chosen = {int(p) for p in wanted.split(",") if p.isdigit()} if wanted else None
        fields = set(request.query.get("info_type", "").split(",")) - {""}
        info = [{k: v for k, v in p.info().items() if k == "port" or not fields or k in fields}
                for p in self.ports if chosen is None or p.index in chosen]
        return self._answer(200, info=info)

    async def _stop_sms(self, request: web.Request) -> web.Response:
        task_id = int(request.query.get("task_id", "0") or 0)
        stopped = [s for s in self.sms if s.task_id == task_id and s.status == "SENDING"]
        for sms in stopped:
            sms.status = "FAILED"
        known = any(s.task_id == task_id for s in self.sms)
        return self._answer(200 if known else 404)

    async def _in_queue(self, request: web.Request) -> web.Response:
        return self._answer(200, in_queue=self._queued())

    def _queued(self) -> int:
        return sum(p.queue.qsize() for p in self.ports)

    # the radio ---------------------------------------------------------------
    async def _radio(self, port: SimPort) -> None:
        while True:
            sms = await port.queue.get()
            if sms.status != "SENDING":  # stopped while queued
                continue
            began = time.time()
            if port.last_end is not None:  # idle time between two SMS: the client's
                port.gaps_s.append(began - port.last_end)
            await asyncio.sleep(self.latency_s * sms.count)
            port.last_end = time.time()
            port.busy_s += port.last_end - began
            self._sent(port, sms)

    def _sent(self, port: SimPort, sms: SimSms) -> None:
        sms.time = now_text()
        if (not _registered(port.reg) or sms.number in self.fail_numbers
                or port.index in self.fail_ports or sms.status != "SENDING"):
            sms.status, port.failed = "FAILED", port.failed + 1
        else:
            sms.status, sms.succ_count, sms.ref_id = "SENT_OK", sms.count, port.next_ref
            port.next_ref = (port.next_ref + sms.count) % 256
            port.sent += 1
            if sms.report:
                self._spawn(self._report_later(sms))
        self._push("sms_result", [sms.result()])

    async def _report_later(self, sms: SimSms) -> None:
        await asyncio.sleep(self.dlr_delay_s)
        code = self.dlr_codes.get(sms.number, self.dlr_code)
        items = [{"port": sms.port, "number": sms.number, "time": sms.time,
                  "ref_id": (sms.ref_id + i) % 256, "status_code": code,
                  "imsi": self.ports[sms.port].imsi} for i in range(sms.count)]
        self.deliveries += items
        self._push("sms_deliver_status", items)
        if code == 0:
            sms.status = "DELIVERED"
            self._push("sms_result", [sms.result()])

    # push --------------------------------------------------------------------
    def _push(self, kind: str, items: list[dict[str, Any]]) -> None:
        if self.push_url and kind in self.push_kinds:
            self._spawn(self._post({"sn": self.sn, kind: items}))

    async def _post(self, payload: dict[str, Any]) -> None:
        assert self._session is not None and self.push_url is not None
        self.pushes.append(payload)
        try:  # at most once: a failed push is not retried
            async with self._session.post(self.push_url, json=payload) as resp:
                await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stats(self) -> dict[str, Any]:
        return {"ports": [{"port": p.index, "reg": p.reg, "sent": p.sent, "failed": p.failed,
                           "busy_s": round(p.busy_s, 4), "gaps_s": [round(g, 4) for g in p.gaps_s]}
                          for p in self.ports],
                "in_queue": self._queued(), "requests": self.requests}


def _registered(reg: str) -> bool:
    return reg in ("REGISTER_OK", "REGISTERED", "Mobile Registered")


def _fill(text: str, params: list[Any]) -> str:
    for value in params:
        text = text.replace("#param#", str(value), 1)
    return text


def _matches(item: dict[str, Any], body: dict[str, Any]) -> bool:
    numbers, ports = body.get("number"), body.get("port")
    after, before = body.get("time_after"), body.get("time_before")
    return ((not numbers or item["number"] in numbers) and (not ports or item["port"] in ports)
            and (not after or item["time"] > after) and (not before or item["time"] < before))


class _Malformed(Exception):
    """The body is not JSON: the device answers error_code 400."""


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _Malformed from None
    return body if isinstance(body, dict) else {}


def _control_routes(sim: DinstarSimulator) -> list[web.RouteDef]:
    """`/_sim/...`, unauthenticated: a person driving the simulator."""

    async def inbound(request: web.Request) -> web.Response:
        body = await request.json()
        sms_id = sim.inject_sms(int(body.get("port", 0)), str(body["number"]), str(body["text"]))
        return web.json_response({"incoming_sms_id": sms_id})

    async def port(request: web.Request) -> web.Response:
        body = await request.json()
        sim.set_port(int(body["port"]), str(body.get("reg", "REGISTER_OK")))
        return web.json_response(sim.ports[int(body["port"])].info())

    async def fault(request: web.Request) -> web.Response:
        body = await request.json()
        sim.http_status = body.get("http_status")
        sim.hang(bool(body.get("hang", False)))
        return web.json_response({"http_status": sim.http_status})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(sim.stats())

    return [web.post("/_sim/inbound", inbound), web.post("/_sim/port", port),
            web.post("/_sim/fault", fault), web.get("/_sim/stats", stats)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--ports", type=int, default=8, help="GSM ports (0..N-1)")
    p.add_argument("--latency-ms", type=float, default=1000, help="radio time per part")
    p.add_argument("--dlr-delay-ms", type=float, default=500)
    p.add_argument("--username", default="admin")
    p.add_argument("--password", default="admin")
    p.add_argument("--auth", choices=["basic", "digest"], default="basic")
    p.add_argument("--push-url", help="e.g. http://127.0.0.1:8080/hooks/dinstar-a")
    asyncio.run(_serve(p.parse_args(argv)))


async def _serve(args: argparse.Namespace) -> None:
    sim = DinstarSimulator(args.ports, username=args.username, password=args.password,
                           auth=args.auth, latency_s=args.latency_ms / 1000,
                           dlr_delay_s=args.dlr_delay_ms / 1000, push_url=args.push_url,
                           host=args.host, port=args.port)
    print(f"dinstar simulator: {await sim.start()} ({len(sim.ports)} ports, {args.auth} auth, "
          f"push to {args.push_url or 'nowhere'})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.close()


if __name__ == "__main__":
    main()
