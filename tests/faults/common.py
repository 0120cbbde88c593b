"""What the fault tests share: an independent record of what went out, and
waiting for the product to get somewhere without hiding where it stopped."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from spool.base import ListFilter, State


def loop_channels(record: Path, names: tuple[str, ...] = ("loop-a", "loop-b"),
                  **extra: Any) -> list[dict[str, Any]]:
    """Loopback channels that append a line per accepted send to `record`."""
    return [{"name": name, "driver": "loopback", "cost": 0.15, "report_delay_ms": 30,
             "record_path": str(record), **extra} for name in names]


def sent_ids(record: Path) -> Counter[int]:
    """Message id -> times a channel accepted it. A line still being written
    by a live daemon is left for the next look."""
    if not record.exists():
        return Counter()
    lines = record.read_bytes().split(b"\n")
    return Counter(json.loads(line)["id"] for line in lines[:-1] if line)


async def settle(check: Callable[[], Awaitable[Any]], timeout_s: float,
                 every_s: float = 0.05) -> bool:
    """True once `check()` is truthy, False after `timeout_s`: the caller
    asserts with a message that says what was left."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)


async def readiness(gw: Any) -> tuple[int, dict[str, Any]]:
    """/readyz's status and body."""
    async with gw.session.get(gw.url + "/readyz") as r:
        return r.status, await r.json()


def storage_write_problem(body: dict[str, Any]) -> str | None:
    """The problem /readyz names when the store cannot write, if it names one."""
    return next((p for p in body["problems"] if p.startswith("storage writes:")), None)


async def ready_again(gw: Any, timeout_s: float) -> bool:
    async def ready() -> bool:
        return (await readiness(gw))[0] == 200
    return await settle(ready, timeout_s, every_s=0.25)


async def paced_burst(gw: Any, n: int, time_between_ms: int) -> list[int]:
    """`n` messages in a campaign paced `time_between_ms` apart: the
    dispatcher claims one at a time, so it is busy claiming (not waiting for
    a channel) when a fault comes."""
    async with gw.session.post(f"{gw.url}/api/v1/campaigns", headers=gw.headers(),
                               json={"name": "paced", "time_between_ms": time_between_ms}) as r:
        assert r.status == 201, await r.text()
    await gw.app.services.campaigns.reload()
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "messages": [{"destination": f"+59898{i:06d}", "message": f"paced {i}",
                          "campaign": "paced"} for i in range(n)]}) as r:
        assert r.status == 202, await r.text()
        return [m["id"] for m in (await r.json())["messages"]]


def outage_lines(logs: list[dict[str, Any]], task: str) -> tuple[int, int]:
    """How many times the dispatcher's `task` logged an outage's start and end."""
    mine = [e["event"] for e in logs if e.get("task") == task]
    return mine.count("dispatcher.store_unavailable"), mine.count("dispatcher.store_back")


async def paced_outage(gw: Any, record: Path, acked: list[int], *, what: str,
                       start: Callable[[], Awaitable[None]],
                       end: Callable[[], Awaitable[None]], resume_bound_s: float) -> None:
    """The store goes away (`start`) while the dispatcher is busy claiming a
    paced campaign and comes back when `end` returns. Nothing may go out
    that could not be recorded; the dispatcher rides the outage out by itself
    (one log line as its claims fail, one as they work, never the
    supervisor) and sends again within `resume_bound_s`; each message once."""
    def sent() -> int:
        return sum(sent_ids(record).values())

    async def going() -> bool:
        return sent() >= 3
    assert await settle(going, 10, every_s=0.005)
    with capture_logs() as logs:
        await start()
        at_start = sent()
        await end()
        back = time.monotonic()
        during = sent() - at_start

        async def resumed() -> bool:
            return sent() > at_start + during
        assert await settle(resumed, 20, every_s=0.01), f"dispatch did not resume after {what}"
        resume_s = time.monotonic() - back

        async def all_sent() -> bool:
            stored = await gw.store.list_messages(ListFilter(tenant=1, limit=1000))
            return all(m.state == State.SENT for m in stored)
        done = await settle(all_sent, 15)
    print(f"\npaced campaign, {what} with {at_start} of {len(acked)} sent; sent meanwhile: "
          f"{during}; first send {resume_s:.1f} s after the store came back; claim outage "
          f"log lines (start, end): {outage_lines(logs, 'claim')}")
    assert during <= 1, f"{during} sends while the spool could not record them"
    assert resume_s < resume_bound_s, f"first send {resume_s:.1f} s after the store came back"
    assert done, f"messages left behind after {what}"
    sends = sent_ids(record)
    assert set(sends) == set(acked) and max(sends.values()) == 1, "each sent exactly once"
    assert outage_lines(logs, "claim") == (1, 1), "one line as claims fail, one as they work"
    assert not [e for e in logs if e["event"] == "task.store_unavailable"
                and e.get("task") == "dispatcher"], "the dispatcher never fell to the supervisor"


async def refused_for_storage(gw: Any) -> None:
    """A message now is refused with 503, Retry-After and an error naming
    storage; it must not be stored (the caller checks: its text is "x")."""
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                               json={"destination": "098344484", "message": "x"}) as r:
        assert r.status == 503, await r.text()
        assert int(r.headers["Retry-After"]) >= 1
        assert "storage" in (await r.json())["error"]


async def resumes_and_sends_all(gw: Any, record: Path, acked: list[int], sent_before: int,
                                back: float, summary: str, resume_bound_s: float) -> None:
    """After a storage fault ended at `back` (monotonic): dispatch resumes
    within `resume_bound_s`, /readyz is 200 again, every acknowledged message
    is sent exactly once, and the refused "x" was never stored while the "y"
    sent after the fault was."""
    async def resumed() -> bool:
        return sum(sent_ids(record).values()) > sent_before
    assert await settle(resumed, 20), f"dispatch did not resume ({summary})"
    resume_s = time.monotonic() - back
    assert await ready_again(gw, 10), f"/readyz still 503 after the fault: {await readiness(gw)}"

    async def all_sent() -> bool:
        stored = await gw.store.list_messages(ListFilter(tenant=1, limit=1000))
        return all(m.state == State.SENT for m in stored)
    done = await settle(all_sent, 15)
    stored = await gw.store.list_messages(ListFilter(tenant=1, limit=1000))
    left = {m.id: m.state.name for m in stored if m.state != State.SENT}
    print(f"\n{summary}; first send {resume_s:.1f} s after the store came back; "
          f"not sent: {left}")
    assert done, f"messages left behind: {left}"
    assert [m.message for m in stored if m.message in ("x", "y")] == ["y"], \
        "the refused request stored nothing"
    sends = sent_ids(record)
    assert set(sends) == set(acked) and max(sends.values()) == 1, "each sent exactly once"
    assert resume_s < resume_bound_s, f"first send {resume_s:.1f} s after the store came back"
