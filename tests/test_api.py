"""The HTTP doors, through the real daemon on a loopback port."""

from __future__ import annotations

import json

from spool.base import State
from tests.conftest import Running

LEGACY = "/Integra/resources/SMS/SendSMS"


async def final_state(gw: Running, message_id: int, *states: State) -> dict:
    async def check():
        async with gw.session.get(f"{gw.url}/api/v1/messages/{message_id}",
                                  headers=gw.headers()) as r:
            body = await r.json()
            return body if body["state"] in states else None
    return await gw.wait_for(check)


async def test_legacy_form_from_loopback_needs_no_key_and_is_sent(gateway: Running) -> None:
    form = {"destination": "098344484", "message": "hi", "campaign": "default", "agent": "ana"}
    async with gateway.session.post(gateway.url + LEGACY, data=form) as r:
        assert r.status == 200
        body = await r.json()
    assert body["state"] == State.TO_PROCESS
    done = await final_state(gateway, body["id"], State.SENT, State.DELIVERED)
    assert done["destination"] == "+59898344484"
    assert done["agent"] == "ana"
    assert done["channel"] in ("loop-a", "loop-b")
    states = [h["state_name"] for h in done["history"]]
    assert states[:3] == ["TO_PROCESS", "SENDING", "SENT"]


async def test_legacy_form_errors_name_the_field(gateway: Running) -> None:
    async with gateway.session.post(gateway.url + LEGACY, data={"message": "x"}) as r:
        assert r.status == 400
        assert (await r.json())["field"] == "destination"
    form = {"destination": "098344484", "message": "x", "campaign": "nope"}
    async with gateway.session.post(gateway.url + LEGACY, data=form) as r:
        assert r.status == 422
        body = await r.json()
        assert body["field"] == "campaign" and "nope" in body["error"]


async def test_legacy_form_outside_open_networks_requires_key(make_gateway) -> None:
    gw = await make_gateway(server={"legacy_open_networks": ["10.9.9.9/32"]})
    form = {"destination": "098344484", "message": "hi"}
    async with gw.session.post(gw.url + LEGACY, data=form) as r:
        assert r.status == 401
    async with gw.session.post(gw.url + LEGACY, data=form, headers=gw.headers()) as r:
        assert r.status == 200


async def test_json_single_and_batch_with_queue_depth(gateway: Running) -> None:
    await gateway.store.update_campaign(1, enabled=False)  # hold them in the queue
    await gateway.app.services.campaigns.reload()
    async with gateway.session.post(f"{gateway.url}/api/v1/messages", headers=gateway.headers(),
                                    json={"destination": "+59898344484", "message": "one"}) as r:
        assert r.status == 202
        single = await r.json()
    assert single["id"] and single["state"] == 1
    batch = {"messages": [{"destination": f"09834448{i}", "message": f"m{i}",
                           "priority": i} for i in range(3)]}
    async with gateway.session.post(f"{gateway.url}/api/v1/messages", headers=gateway.headers(),
                                    json=batch) as r:
        assert r.status == 202
        body = await r.json()
    assert len(body["messages"]) == 3
    assert body["queue_depth_ahead"] >= 1
    ids = [m["id"] for m in body["messages"]]
    assert ids == sorted(ids) and ids[0] > single["id"]


async def test_idempotency_key_returns_the_same_message(gateway: Running) -> None:
    msg = {"destination": "098344484", "message": "otp 1234", "idempotency_key": "order-77"}
    ids = []
    for _ in range(2):
        async with gateway.session.post(f"{gateway.url}/api/v1/messages",
                                        headers=gateway.headers(), json=msg) as r:
            assert r.status == 202
            body = await r.json()
            ids.append((body["id"], body["duplicate"]))
    assert ids[0][0] == ids[1][0]
    assert [d for _, d in ids] == [False, True]


async def test_unsendable_messages_are_stored_invalid_with_reason(gateway: Running) -> None:
    batch = {"messages": [{"destination": "12", "message": "short number"},
                          {"destination": "098344484", "message": "x" * 2000}]}
    async with gateway.session.post(f"{gateway.url}/api/v1/messages", headers=gateway.headers(),
                                    json=batch) as r:
        body = await r.json()
    assert [m["state"] for m in body["messages"]] == [State.INVALID, State.INVALID]
    bad_number = await gateway.store.get_message(None, body["messages"][0]["id"])
    too_long = await gateway.store.get_message(None, body["messages"][1]["id"])
    assert bad_number.error.startswith("destination:")
    assert "segments" in too_long.error


async def test_bad_requests_get_json_errors(gateway: Running) -> None:
    url, h = f"{gateway.url}/api/v1/messages", gateway.headers()
    async with gateway.session.post(url, headers=h, data=b"{not json") as r:
        assert r.status == 400 and (await r.json())["field"] == "body"
    async with gateway.session.post(url, headers=h, json={"messages": [
            {"destination": "098344484", "message": "ok"}, {"destination": "098344484"}]}) as r:
        assert r.status == 400 and (await r.json())["field"] == "messages[1].message"
    async with gateway.session.post(url, headers=h, json={"destination": "098344484",
                                                          "message": "x", "priority": "hi"}) as r:
        assert r.status == 400 and (await r.json())["field"] == "priority"
    async with gateway.session.post(url, headers=h, json={"messages": [
            {"destination": "1", "message": "m"}] * 1001}) as r:
        assert r.status == 400 and (await r.json())["field"] == "messages"
    # smsgw's own annotations cannot be forged: leave to pass the blacklist, a price.
    for reserved in ({"bypass_blacklist": True}, {"price": 0}, {"channel": "loop-a"}):
        async with gateway.session.post(url, headers=h, json={"messages": [
                {"destination": "098344484", "message": "m", "data": {"_smsgw": reserved}}]}
                ) as r:
            assert r.status == 400 and (await r.json())["field"] == "messages[0].data._smsgw"
    async with gateway.session.post(url, headers=h, data=b"x" * 2_000_000) as r:
        assert r.status == 413 and (await r.json())["field"] == "body"
    async with gateway.session.post(url, headers={"X-Api-Key": "sgw_wrong"},
                                    json={"destination": "1", "message": "m"}) as r:
        assert r.status == 401 and "error" in await r.json()
    # Nothing of the above reached the spool.
    assert await gateway.store.list_messages(_all(gateway)) == []


def _all(gw: Running):
    from spool.base import ListFilter
    return ListFilter(tenant=1)


async def test_tenants_never_see_each_other(gateway: Running) -> None:
    async with gateway.session.post(f"{gateway.url}/api/v1/messages", headers=gateway.headers(),
                                    json={"destination": "098344484", "message": "mine"}) as r:
        mine = (await r.json())["id"]
    other = gateway.headers(gateway.other_key)
    for method, path in [("GET", f"/api/v1/messages/{mine}"),
                         ("DELETE", f"/api/v1/messages/{mine}"),
                         ("POST", f"/api/v1/messages/{mine}/release")]:
        async with gateway.session.request(method, gateway.url + path, headers=other) as r:
            assert r.status == 404, (method, path)
    async with gateway.session.get(f"{gateway.url}/api/v1/messages", headers=other) as r:
        assert (await r.json())["messages"] == []
    # The other tenant has its own "default" campaign; it cannot name ours by id either.
    async with gateway.session.get(f"{gateway.url}/api/v1/messages/{mine}",
                                   headers=gateway.headers()) as r:
        assert r.status == 200


async def test_list_filters_and_pagination(gateway: Running) -> None:
    await gateway.store.update_campaign(1, enabled=False)
    await gateway.app.services.campaigns.reload()
    batch = {"messages": [{"destination": "098344484", "message": f"m{i}"} for i in range(5)]
             + [{"destination": "1", "message": "bad"}]}
    async with gateway.session.post(f"{gateway.url}/api/v1/messages", headers=gateway.headers(),
                                    json=batch) as r:
        assert r.status == 202
    seen, after = [], 0
    while True:
        async with gateway.session.get(
                f"{gateway.url}/api/v1/messages",
                params={"state": "to_process", "limit": "2", "after": str(after),
                        "campaign": "default", "since": "2020-01-01T00:00:00Z"},
                headers=gateway.headers()) as r:
            page = await r.json()
        seen += [m["message"] for m in page["messages"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == [f"m{i}" for i in range(5)]
    async with gateway.session.get(f"{gateway.url}/api/v1/messages", params={"state": "7"},
                                   headers=gateway.headers()) as r:
        assert [m["message"] for m in (await r.json())["messages"]] == ["bad"]
    async with gateway.session.get(f"{gateway.url}/api/v1/messages", params={"state": "nope"},
                                   headers=gateway.headers()) as r:
        assert r.status == 400 and (await r.json())["field"] == "state"


async def test_cancel_unprocessed_only(gateway: Running) -> None:
    await gateway.store.update_campaign(1, enabled=False)
    await gateway.app.services.campaigns.reload()
    async with gateway.session.post(f"{gateway.url}/api/v1/messages", headers=gateway.headers(),
                                    json={"destination": "098344484", "message": "x"}) as r:
        mid = (await r.json())["id"]
    async with gateway.session.delete(f"{gateway.url}/api/v1/messages/{mid}",
                                      headers=gateway.headers()) as r:
        assert r.status == 200 and (await r.json())["state"] == State.CANCELLED
    async with gateway.session.delete(f"{gateway.url}/api/v1/messages/{mid}",
                                      headers=gateway.headers()) as r:
        assert r.status == 409 and (await r.json())["state"] == "CANCELLED"


async def test_health_readiness_and_openapi(gateway: Running) -> None:
    async with gateway.session.get(gateway.url + "/healthz") as r:
        assert r.status == 200
    async with gateway.session.get(gateway.url + "/readyz") as r:
        body = await r.json()
        assert r.status == 200 and body["channels_up"] == ["loop-a", "loop-b"]
    async with gateway.session.get(gateway.url + "/api/v1/openapi.json") as r:
        spec = json.loads(await r.text())
    assert "/api/v1/messages" in spec["paths"] and spec["openapi"].startswith("3.")


async def test_per_tenant_rate_limit_answers_429_with_retry_after(make_gateway) -> None:
    gw = await make_gateway(server={"rate_limit_per_s": 2, "rate_limit_burst": 3})
    statuses = []
    for _ in range(5):
        async with gw.session.get(f"{gw.url}/api/v1/messages", headers=gw.headers()) as r:
            statuses.append(r.status)
            if r.status == 429:
                assert int(r.headers["Retry-After"]) >= 1
                assert "rate limit" in (await r.json())["error"]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    # Another tenant has its own bucket.
    async with gw.session.get(f"{gw.url}/api/v1/messages",
                              headers=gw.headers(gw.other_key)) as r:
        assert r.status == 200
    # A batch counts per message.
    batch = {"messages": [{"destination": "098344484", "message": "x"}] * 5}
    async with gw.session.post(f"{gw.url}/api/v1/messages", json=batch,
                               headers=gw.headers(gw.other_key)) as r:
        assert r.status == 429


async def test_whatsapp_messages_through_the_json_api(make_gateway) -> None:
    from tests.conftest import loopback_channel

    gw = await make_gateway(channels=[loopback_channel("sms"),
                                      loopback_channel("wa", kind="whatsapp", cost=0.5)])
    template = {"type": "template", "template": {"name": "hello", "language": {"code": "es"}}}
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344484", "kind": "whatsapp", "whatsapp": template}) as r:
        assert r.status == 202, await r.text()
        mid = (await r.json())["id"]

    async def sent():
        m = await gw.store.get_message(None, mid)
        return m if m.state in (State.SENT, State.DELIVERED) else None
    m = await gw.wait_for(sent)
    assert (m.kind, m.channel, m.cost) == ("whatsapp", "wa", 0.5)
    assert m.data["whatsapp"] == template
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344484", "kind": "whatsapp"}) as r:
        assert r.status == 400 and (await r.json())["field"] == "whatsapp"
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344484", "message": "x", "kind": "fax"}) as r:
        assert r.status == 400 and (await r.json())["field"] == "kind"


async def test_odd_numbers_and_nulls_are_400_not_500(gateway: Running) -> None:
    h = gateway.headers()
    for query in ("limit=--5", "limit=%C2%B2", "after=1-2"):
        async with gateway.session.get(f"{gateway.url}/api/v1/messages?{query}", headers=h) as r:
            assert r.status == 400, query
    for field in ("priority", "time_between_ms"):
        async with gateway.session.patch(f"{gateway.url}/api/v1/campaigns/default", headers=h,
                                         json={field: None}) as r:
            assert r.status == 400 and (await r.json())["field"] == field
        async with gateway.session.post(f"{gateway.url}/api/v1/campaigns", headers=h,
                                        json={"name": f"n-{field}", field: None}) as r:
            assert r.status == 400 and (await r.json())["field"] == field
    async with gateway.session.post(f"{gateway.url}/api/v1/messages", headers=h, json={
            "destination": "098344484", "message": "x", "priority": 7.0}) as r:
        assert r.status == 202, "7.0 is the integer 7 in JSON"
