"""Hooks that cannot tell the provider from anyone else are not open by default.

A Dinstar push without `push_token` and an HTTP DLR without `dlr_secret`
would let anyone who reaches the port forge a STOP (the number joins the
do-not-contact list, and the gateway texts its opt-out reply to it) or a
delivery report. Such a channel starts only with `hook_networks` or an
explicit `allow_unauthenticated_hooks = true`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drivers.simulators.dinstar import DinstarSimulator, now_text
from tests.conftest import config, loopback_channel
from tests.proc import Daemon, free_port, smsgw, toml_value, write_config

NUMBER = "+59898344401"


def dinstar_channel(url: str = "http://127.0.0.1:9", **extra: Any) -> dict[str, Any]:
    # Polls off: only the push (or nothing) tells the gateway anything.
    return {"name": "dinstar-a", "driver": "dinstar", "url": url, "ports": "0-1",
            "dlr_poll_interval_s": 0, "inbound_poll_interval_s": 0,
            "status_poll_interval_s": 30, "request_timeout_s": 1, **extra}


def http_dlr(**extra: Any) -> dict[str, Any]:
    return {"name": "agg", "driver": "http", "url": "http://127.0.0.1:9/send",
            "id_from": "ours", "dlr": {"id_field": "id", "status_field": "status",
                                       "delivered_values": ["1"], "secret_param": "token"},
            **extra}


def stop_push(sms_id: int) -> dict[str, Any]:
    """What a Dinstar pushes for an incoming SMS, here one saying STOP."""
    return {"sn": "forged", "sms": [{
        "incoming_sms_id": sms_id, "port": 0, "number": NUMBER, "smsc": "+59899000000",
        "timestamp": now_text(), "text": "STOP", "imsi": "748010000000001"}]}


def write_toml(tmp_path: Path, raw: dict[str, Any]) -> Path:
    """The config as a file; the last channel's `dlr` as its sub-table."""
    dlr = raw["channels"][-1].pop("dlr", None)
    path = write_config(tmp_path / "smsgw.toml", raw)
    if dlr is not None:
        with path.open("a") as fh:
            fh.write("[channels.dlr]\n" + "".join(f"{k} = {toml_value(v)}\n"
                                                  for k, v in dlr.items()))
    return path


@pytest.mark.parametrize(("channel", "key"), [
    (dinstar_channel(), "channels[1].push_token"),
    (http_dlr(), "channels[1].dlr_secret"),
])
def test_an_unauthenticated_hook_refuses_to_start(tmp_path: Path, channel: dict[str, Any],
                                                  key: str) -> None:
    cfg = write_toml(tmp_path, config(tmp_path, channels=[loopback_channel("loop-a"), channel]))
    done = smsgw(cfg, "run", check=False)
    assert done.returncode == 78, done.stderr
    named = [line for line in done.stderr.splitlines() if key in line]
    assert named == [f"smsgw: config error: {key}: required unless "
                     "allow_unauthenticated_hooks = true or hook_networks is set"], done.stderr
    assert "Traceback" not in done.stderr


def test_the_explicit_flag_starts_with_one_warning_naming_the_channel(tmp_path: Path) -> None:
    port = free_port()
    raw = config(tmp_path, channels=[loopback_channel("loop-a"),
                                     dinstar_channel(allow_unauthenticated_hooks=True)],
                 logging={"format": "json", "level": "info"})
    raw["server"]["port"] = port
    daemon = Daemon(write_toml(tmp_path, raw), port, tmp_path / "daemon.log")
    try:
        daemon.start()
    finally:
        daemon.stop()
    events = [json.loads(line) for line in daemon.log.read_text().splitlines()
              if line.startswith("{")]
    warned = [e for e in events if e.get("event") == "hook.unauthenticated"]
    assert len(warned) == 1, warned
    assert warned[0]["channel"] == "dinstar-a" and warned[0]["level"] == "warning"
    assert warned[0]["missing"] == "push_token"


async def _push_from(source: str, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    # The client's socket is bound to `source`: the daemon sees that address.
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.post(url, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_hook_networks_refuse_other_addresses(make_gateway,
                                                    dinstar: DinstarSimulator) -> None:
    gw = await make_gateway(
        channels=[dinstar_channel(dinstar.url, hook_networks=["127.0.0.1/32"])])
    hook = f"{gw.url}/hooks/dinstar-a"
    status, body = await _push_from("127.0.0.2", hook, stop_push(1))
    assert status == 403 and "address" in body["error"]
    assert await gw.inbound() == []
    assert await gw.store.blacklist_list() == []

    status, body = await _push_from("127.0.0.1", hook, stop_push(2))
    assert (status, body) == (200, {"error_code": 200})
    [inbound] = await gw.wait_for(gw.inbound)
    assert (inbound.sender, inbound.text) == (NUMBER, "STOP")
    assert await gw.store.blacklist_list() == [(NUMBER, None)]


async def test_hook_networks_judge_the_client_a_proxy_names(make_gateway,
                                                            dinstar: DinstarSimulator) -> None:
    # A reverse proxy on the same host: every caller comes from 127.0.0.1.
    gw = await make_gateway(channels=[dinstar_channel(dinstar.url, hook_networks=["10.1.2.3/32"])],
                            server={"trusted_proxies": ["127.0.0.1/32"]})
    hook = f"{gw.url}/hooks/dinstar-a"
    for client, status in (("192.0.2.7", 403), ("10.1.2.3", 200)):
        async with gw.session.post(hook, json=stop_push(1),
                                   headers={"X-Forwarded-For": client}) as r:
            assert r.status == status, client
    async with gw.session.post(hook, json=stop_push(2)) as r:
        assert r.status == 403  # the proxy's own host is not the device


async def test_an_untrusted_proxy_makes_the_caller_unknown(make_gateway,
                                                          dinstar: DinstarSimulator) -> None:
    gw = await make_gateway(
        channels=[dinstar_channel(dinstar.url, hook_networks=["127.0.0.1/32"])])
    async with gw.session.post(f"{gw.url}/hooks/dinstar-a", json=stop_push(1),
                               headers={"X-Forwarded-For": "192.0.2.7"}) as r:
        assert r.status == 403
    assert await gw.store.blacklist_list() == []


async def test_a_network_also_narrows_a_hook_with_a_token(make_gateway,
                                                          dinstar: DinstarSimulator) -> None:
    gw = await make_gateway(channels=[dinstar_channel(dinstar.url, push_token="t0k",
                                              hook_networks=["127.0.0.1/32"])])
    status, _ = await _push_from("127.0.0.2", f"{gw.url}/hooks/dinstar-a/t0k", stop_push(1))
    assert status == 403
    status, _ = await _push_from("127.0.0.1", f"{gw.url}/hooks/dinstar-a/t0k", stop_push(2))
    assert status == 200


async def test_the_loopback_hook_refuses_whoever_a_proxy_forwards(make_gateway) -> None:
    # A reverse proxy on this host makes every caller 127.0.0.1; the simulated
    # channel's hook must still be this host's alone, or anyone could STOP.
    gw = await make_gateway(channels=[loopback_channel("loop-a")])
    form = {"from": "+59898344484", "to": "+59899000000", "text": "STOP"}
    for header in ({"X-Forwarded-For": "192.0.2.7"}, {"Forwarded": "for=192.0.2.7"},
                   {"X-Real-IP": "192.0.2.7"}):
        async with gw.session.post(f"{gw.url}/hooks/loop-a/inbound", data=form,
                                   headers=header) as r:
            assert r.status == 403, header
    assert await gw.store.blacklist_list() == []
    async with gw.session.post(f"{gw.url}/hooks/loop-a/inbound", data=form) as r:
        assert r.status == 200
    assert [d for d, _ in await gw.store.blacklist_list()] == ["+59898344484"]
