"""The Dinstar driver through the running daemon, against the simulator."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.simulators.dinstar import DinstarSimulator
from spool.base import State
from tests.conftest import Running, loopback_channel
from tests.test_dispatch import settled, submit

PORTS = ("dinstar-a:0", "dinstar-a:1", "dinstar-a:2", "dinstar-a:3")


def dinstar_channel(sim: DinstarSimulator, name: str = "dinstar-a", **extra: Any) -> dict[str, Any]:
    # Timeouts shrunk to milliseconds: every wait in these tests is bounded.
    return {"name": name, "driver": "dinstar", "url": sim.url, "ports": "0-3", "cost": 0.1,
            "result_poll_interval_ms": 20, "dlr_poll_interval_s": 0.1,
            "inbound_poll_interval_s": 0.1, "status_poll_interval_s": 0.2,
            "reconnect_max_s": 0.4, "request_timeout_s": 1, "result_timeout_s": 3,
            "port_rest_s": 30, "hook_networks": ["127.0.0.1/32"], **extra}


# No poll but the send's own: the send is what finds the device down.
SENDS_FIND_IT_DOWN = {"status_poll_interval_s": 30, "dlr_poll_interval_s": 0,
                      "inbound_poll_interval_s": 0}


@pytest.fixture
async def sim() -> AsyncIterator[DinstarSimulator]:
    simulator = DinstarSimulator(4, latency_s=0.03, dlr_delay_s=0.05)
    await simulator.start()
    yield simulator
    await simulator.close()


async def push_to(sim: DinstarSimulator, gw: Running, name: str = "dinstar-a") -> None:
    sim.push_url = f"{gw.url}/hooks/{name}"


def health(gw: Running, name: str) -> Any:
    return gw.app.services.router.runners[name].channel.health()


async def test_sent_then_delivered_by_push(make_gateway, sim: DinstarSimulator) -> None:
    # Polls so slow that only the push can settle anything in time.
    gw = await make_gateway(channels=[dinstar_channel(
        sim, result_poll_interval_ms=60_000, dlr_poll_interval_s=0, inbound_poll_interval_s=0)])
    await push_to(sim, gw)
    ids = await submit(gw, 8)
    done = await settled(gw, ids, {State.DELIVERED})
    assert {m.channel for m in done} <= set(PORTS)
    assert {m.provider_ref for m in done} == {str(s.user_id) for s in sim.sms}
    for m in done:
        states = [e.state for e in await gw.store.message_events(m.id)]
        assert states.index(State.SENT) < states.index(State.DELIVERED)
    assert any("sms_deliver_status" in p for p in sim.pushes)


async def test_sent_then_delivered_by_polling(make_gateway, sim: DinstarSimulator) -> None:
    gw = await make_gateway(channels=[dinstar_channel(sim)])  # no push URL on the device
    ids = await submit(gw, 8)
    done = await settled(gw, ids, {State.DELIVERED})
    assert all(m.attempts == 1 and m.cost == 0.1 for m in done)
    assert not sim.pushes


async def test_port_range_is_four_channels_all_used(make_gateway, sim: DinstarSimulator) -> None:
    gw = await make_gateway(channels=[dinstar_channel(sim)])
    await push_to(sim, gw)
    assert set(gw.app.services.router.runners) == set(PORTS)
    assert all(r.concurrency == 1 for r in gw.app.services.router.runners.values())
    ids = await submit(gw, 24)
    done = await settled(gw, ids, {State.SENT, State.DELIVERED})
    per_port = Counter(m.channel for m in done)
    assert set(per_port) == set(PORTS)
    assert [p.sent for p in sim.ports] == [per_port[name] for name in PORTS]


async def test_unregistered_port_is_down_and_skipped(make_gateway, sim: DinstarSimulator) -> None:
    sim.set_port(2, "NO_SIM")
    gw = await make_gateway(channels=[dinstar_channel(sim)])
    await push_to(sim, gw)
    await gw.wait_for(_down(gw, "dinstar-a:2"))
    assert "NO_SIM" in health(gw, "dinstar-a:2").last_error
    ids = await submit(gw, 12)
    done = await settled(gw, ids, {State.SENT, State.DELIVERED})
    assert {m.channel for m in done} == set(PORTS) - {"dinstar-a:2"}


async def test_failing_port_rests_and_others_carry(make_gateway, sim: DinstarSimulator) -> None:
    sim.fail_ports.add(1)  # registered, yet the network takes nothing (no credit)
    gw = await make_gateway(channels=[dinstar_channel(sim, port_fail_limit=2)],
                            dispatcher={"max_attempts": 10})
    await push_to(sim, gw)
    ids = await submit(gw, 16)
    done = await settled(gw, ids, {State.SENT, State.DELIVERED})
    assert "dinstar-a:1" not in {m.channel for m in done}
    assert sim.ports[1].failed == 2  # then it rested: nothing more was tried on it
    port = health(gw, "dinstar-a:1")
    assert not port.up and "FAILED" in port.last_error


async def test_device_down_then_recovers(make_gateway, sim: DinstarSimulator) -> None:
    gw = await make_gateway(channels=[dinstar_channel(sim, **SENDS_FIND_IT_DOWN)],
                            dispatcher={"max_attempts": 50})
    await push_to(sim, gw)
    await gw.wait_for(_up(gw, "dinstar-a:0"))
    sim.http_status = 500
    ids = await submit(gw, 4)
    await gw.wait_for(_all_down(gw))
    assert "HTTP 500" in health(gw, "dinstar-a:3").last_error
    assert {(await gw.store.get_message(None, i)).state for i in ids} <= {
        State.TO_PROCESS, State.SENDING}
    sim.http_status = None
    done = await settled(gw, ids, {State.SENT, State.DELIVERED})
    assert all(health(gw, name).up for name in PORTS)
    notes = [e.note or "" for m in done for e in await gw.store.message_events(m.id)]
    assert any("HTTP 500" in n for n in notes), notes


async def test_hanging_device_times_out_then_recovers(make_gateway,
                                                      sim: DinstarSimulator) -> None:
    gw = await make_gateway(channels=[dinstar_channel(sim, request_timeout_s=0.3,
                                                      **SENDS_FIND_IT_DOWN)],
                            dispatcher={"max_attempts": 50})
    await push_to(sim, gw)
    await gw.wait_for(_up(gw, "dinstar-a:0"))
    sim.hang()
    [mid] = await submit(gw, 1)
    await gw.wait_for(_all_down(gw))
    assert "unreachable" in health(gw, "dinstar-a:0").last_error
    sim.hang(False)
    [m] = await settled(gw, [mid], {State.SENT, State.DELIVERED})
    assert m.attempts >= 2


async def test_inbound_stored_once_from_push_and_poll(make_gateway,
                                                      sim: DinstarSimulator) -> None:
    gw = await make_gateway(channels=[dinstar_channel(sim)])
    await push_to(sim, gw)
    [mid] = await submit(gw, 1)  # to +59898344400, the customer who will answer
    [sent] = await settled(gw, [mid], {State.SENT, State.DELIVERED})
    # The customer answers the port (the SIM's number) that wrote to them.
    port = int(sent.channel.rsplit(":", 1)[1])
    sim.inject_sms(port, "+59898344400", "Hola, gracias")

    async def stored():
        async with gw.session.get(f"{gw.url}/api/v1/inbound", headers=gw.headers()) as r:
            found = (await r.json())["inbound"]
        return found if found and sim.inbox[0]["read"] else None
    found = await gw.wait_for(stored)
    await gw.wait_for(_after_polls(sim, 3))  # the poll saw it too, and more than once
    async with gw.session.get(f"{gw.url}/api/v1/inbound", headers=gw.headers()) as r:
        assert (await r.json())["inbound"] == found
    [got] = found
    assert got["channel"] == sent.channel and got["sender"] == "+59898344400"
    assert got["recipient"] == sim.ports[port].number and got["text"] == "Hola, gracias"
    assert got["reply_to"] == mid


async def test_wrong_credentials_take_only_this_device_down(make_gateway, sim, capsys) -> None:
    sim.password = "the-right-one"
    gw = await make_gateway(channels=[dinstar_channel(sim, password="s3cret-Pa55w0rd"),
                                      loopback_channel("loop-a")])
    for name in PORTS:
        await gw.wait_for(_down(gw, name))
        assert "refused the credentials of user 'admin'" in health(gw, name).last_error
    ids = await submit(gw, 6)
    done = await settled(gw, ids, {State.SENT, State.DELIVERED})
    assert {m.channel for m in done} == {"loop-a"}
    out = capsys.readouterr()
    assert "refused" in out.out + out.err
    assert "s3cret-Pa55w0rd" not in out.out + out.err


async def test_api_switched_off_takes_the_device_down(make_gateway,
                                                     sim: DinstarSimulator) -> None:
    sim.http_status = 403  # the new-version API is not enabled
    gw = await make_gateway(channels=[dinstar_channel(sim)])
    await gw.wait_for(_all_down(gw))
    assert "New Version" in health(gw, "dinstar-a:0").last_error
    sim.http_status = None  # an operator ticks the box
    await gw.wait_for(_up(gw, "dinstar-a:0"))


async def test_push_token_guards_the_hook(make_gateway, sim: DinstarSimulator) -> None:
    gw = await make_gateway(channels=[dinstar_channel(
        sim, push_token="t0k-42", result_poll_interval_ms=60_000, dlr_poll_interval_s=0,
        inbound_poll_interval_s=0)])
    for where in ("/hooks/dinstar-a", "/hooks/dinstar-a/wrong"):
        async with gw.session.post(gw.url + where, json={"sn": "x", "sms": []}) as r:
            assert r.status == 403
    sim.push_url = f"{gw.url}/hooks/dinstar-a/t0k-42"
    ids = await submit(gw, 2)
    await settled(gw, ids, {State.DELIVERED})


async def test_number_the_device_refuses_fails_at_once(make_gateway,
                                                       sim: DinstarSimulator) -> None:
    sim.reject_numbers.add("+59898344401")
    gw = await make_gateway(channels=[dinstar_channel(sim)])
    await push_to(sim, gw)
    ids = await submit(gw, 2)
    refused = await settled(gw, [ids[1]], {State.FAILED})
    assert refused[0].attempts == 1 and "dinstar-400" in refused[0].error
    await settled(gw, [ids[0]], {State.SENT, State.DELIVERED})


async def test_delivery_status_codes(make_gateway, sim: DinstarSimulator) -> None:
    sim.dlr_codes.update({"+59898344400": 0x21, "+59898344401": 0x45})
    gw = await make_gateway(channels=[dinstar_channel(sim)])
    await push_to(sim, gw)
    ids = await submit(gw, 3)
    await settled(gw, [ids[2]], {State.DELIVERED})
    [failed] = await settled(gw, [ids[1]], {State.FAILED})
    assert "0x45" in failed.error
    await gw.wait_for(_after_polls(sim, 3))
    assert (await gw.store.get_message(None, ids[0])).state == State.SENT  # still trying


async def test_report_after_a_restart_settles_by_part_reference(make_gateway,
                                                                sim: DinstarSimulator) -> None:
    sim.dlr_delay_s = 2.0
    first = await make_gateway(channels=[dinstar_channel(sim, dlr_poll_interval_s=0)])
    await push_to(sim, first)
    ids = await submit(first, 2)
    await settled(first, ids, {State.SENT})
    # A daemon that remembers none of those sends now gets the device's pushes.
    second = await make_gateway(channels=[dinstar_channel(sim, dlr_poll_interval_s=0)],
                                dispatcher={"node_name": "second"})
    await push_to(sim, second)
    await settled(second, ids, {State.DELIVERED})


async def test_digest_auth_and_multipart(make_gateway) -> None:
    sim = DinstarSimulator(2, latency_s=0.02, dlr_delay_s=0.05, auth="digest")
    await sim.start()
    try:
        gw = await make_gateway(channels=[dinstar_channel(sim, ports="0,1")])
        await push_to(sim, gw)
        batch = {"messages": [{"destination": "098344484", "message": "x" * 200}]}
        async with gw.session.post(f"{gw.url}/api/v1/messages", json=batch,
                                   headers=gw.headers()) as r:
            [mid] = [m["id"] for m in (await r.json())["messages"]]
        [m] = await settled(gw, [mid], {State.DELIVERED})
        assert sim.sms[0].count == 2 and m.cost == pytest.approx(0.2)
    finally:
        await sim.close()


def _down(gw: Running, name: str):
    async def check():
        return not health(gw, name).up
    return check


def _up(gw: Running, name: str):
    async def check():
        return health(gw, name).up
    return check


def _all_down(gw: Running):
    async def check():
        return not any(health(gw, name).up for name in PORTS)
    return check


def _after_polls(sim: DinstarSimulator, n: int):
    """True once the device has answered `n` more requests (a few poll cycles)."""
    target = sim.requests + n * 4

    async def check():
        return sim.requests >= target
    return check


async def test_stop_through_a_gateway_port_blocks_the_next_message(
        make_gateway, sim: DinstarSimulator) -> None:
    gw = await make_gateway(channels=[dinstar_channel(sim)])
    await push_to(sim, gw)
    [mid] = await submit(gw, 1)  # to +59898344400
    await settled(gw, [mid], {State.SENT, State.DELIVERED})
    sim.inject_sms(2, "+59898344400", "stop")

    async def listed():
        return await gw.store.blacklisted([("+59898344400", 1)])
    await gw.wait_for(listed)
    [nxt] = await submit(gw, 1)
    await settled(gw, [nxt], {State.BLOCKED})
