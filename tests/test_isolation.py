"""A tenant never sees another's objects: every endpoint that takes an id or
a name answers 404 (not 403) for another tenant's, and changes nothing."""

from __future__ import annotations

from spool.base import State
from tests.conftest import Running


async def mine(gw: Running) -> dict[str, int]:
    """Objects of tenant 1: a message, a journey, a conversation."""
    h = gw.headers()
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=h, json={
            "destination": "098344484", "message": "see https://a.example",
            "smart": {"track_links": True}}) as r:
        mid = (await r.json())["id"]

    async def sent():
        m = await gw.store.get_message(None, mid)
        return m if m.state in (State.SENT, State.DELIVERED) else None
    m = await gw.wait_for(sent)
    async with gw.session.post(f"{gw.url}/hooks/loop-a/inbound",
                               data={"from": "098344484", "text": "hola", "id": "iso-1"}) as r:
        assert r.status == 200
    async with gw.session.get(f"{gw.url}/api/v1/conversations", headers=h) as r:
        [conv] = (await r.json())["conversations"]
    return {"message": mid, "journey": m.journey_id, "conversation": conv["id"]}


async def test_every_id_endpoint_hides_other_tenants_objects(gateway: Running) -> None:
    ids = await mine(gateway)
    other = gateway.headers(gateway.other_key)
    calls = [
        ("GET", f"/api/v1/messages/{ids['message']}", None),
        ("DELETE", f"/api/v1/messages/{ids['message']}", None),
        ("POST", f"/api/v1/messages/{ids['message']}/release", None),
        ("GET", f"/api/v1/journeys/{ids['journey']}", None),
        ("POST", f"/api/v1/journeys/{ids['journey']}/cancel", None),
        ("GET", f"/api/v1/conversations/{ids['conversation']}", None),
        ("POST", f"/api/v1/conversations/{ids['conversation']}/reply", {"message": "x"}),
    ]
    for method, path, body in calls:
        async with gateway.session.request(method, gateway.url + path, headers=other,
                                           json=body) as r:
            assert r.status == 404, (method, path, r.status)
    # Campaigns are looked up by name within the caller's tenant: "promo" of
    # tenant 1 does not exist for tenant 2.
    async with gateway.session.post(f"{gateway.url}/api/v1/campaigns",
                                    headers=gateway.headers(), json={"name": "promo"}) as r:
        assert r.status == 201
    for method, path in [("GET", "/api/v1/campaigns/promo"),
                         ("PATCH", "/api/v1/campaigns/promo"),
                         ("POST", "/api/v1/campaigns/promo/stop"),
                         ("DELETE", "/api/v1/campaigns/promo/messages")]:
        async with gateway.session.request(method, gateway.url + path, headers=other,
                                           json={"enabled": False}) as r:
            assert r.status == 404, (method, path, r.status)
    async with gateway.session.get(f"{gateway.url}/api/v1/campaigns", headers=other) as r:
        assert [c["name"] for c in (await r.json())["campaigns"]] == ["default"]
    async with gateway.session.post(f"{gateway.url}/api/v1/blacklist", headers=other,
                                    json={"destinations": ["098344484"],
                                          "campaign": "promo"}) as r:
        assert r.status == 422
    async with gateway.session.post(f"{gateway.url}/api/v1/blacklist", headers=other,
                                    json={"destinations": ["098344484"]}) as r:
        assert r.status == 400, "only the operator edits the global list"
    # Nothing changed for tenant 1.
    m = await gateway.store.get_message(1, ids["message"])
    assert m.state in (State.SENT, State.DELIVERED)
    assert (await gateway.store.get_journey(1, ids["journey"])).state == "ACTIVE"
    promo = await gateway.store.campaign_by_name(1, "promo")
    assert promo.enabled
