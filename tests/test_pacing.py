"""A paced campaign (`time_between_ms`) keeps its pace however many daemons
share the spool: the slots live in the database and each claim takes one in
its own transaction. Three in-process daemons on PostgreSQL, one on SQLite.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from spool.base import Campaign, NewMessage, State
from tests.conftest import Running
from tests.faults.common import loop_channels, sent_ids, settle

GAP_MS = 200
MESSAGES = 15
# What may come between a claim and its send (blacklist lookup, start mark,
# the event loop's turns) differs a little from one message to the next.
SEND_SLACK_S = 0.05


async def paced_campaign(store, gap_ms: int) -> int:
    made = await store.create_campaign(Campaign(0, 1, "paced", time_between_ms=gap_ms))
    return made.id


async def test_a_paced_claim_takes_one_slot_and_names_the_next(store) -> None:
    campaign = await paced_campaign(store, GAP_MS)
    await store.insert_messages([NewMessage(1, campaign, f"+5989834448{i}", f"p{i}")
                                 for i in range(3)])
    now = time.time()
    first = await store.claim_paced("n", now, now + 60, campaign, token=7)
    assert len(first.claimed) == 1 and first.next_slot_at == now + GAP_MS / 1000
    early = await store.claim_paced("n", now + 0.1, now + 60, campaign)
    assert early.claimed == [] and early.next_slot_at == first.next_slot_at
    second = await store.claim_paced("n", now + 0.2, now + 60, campaign)
    assert [m.message for m in first.claimed + second.claimed] == ["p0", "p1"]
    third = await store.claim_paced("n", now + 0.5, now + 60, campaign)
    assert len(third.claimed) == 1 and third.next_slot_at == now + 0.7
    # Nothing waiting: the slot is not spent, so the next message goes at once.
    idle = await store.claim_paced("n", now + 1.0, now + 60, campaign)
    assert idle.claimed == [] and idle.next_slot_at == now + 0.7
    assert (await store.claim_paced("n", now, now + 60, 999)).next_slot_at is None


async def test_a_changed_gap_counts_from_the_last_slot(store) -> None:
    campaign = await paced_campaign(store, 60_000)
    await store.insert_messages([NewMessage(1, campaign, "+59898344484", f"p{i}")
                                 for i in range(2)])
    now = time.time()
    assert len((await store.claim_paced("n", now, now + 60, campaign)).claimed) == 1
    await store.update_campaign(campaign, time_between_ms=100)
    later = await store.claim_paced("n", now + 0.1, now + 60, campaign)
    assert len(later.claimed) == 1, "the new gap holds at once, not after the old one"


async def test_release_claims_returns_only_unstarted_rows_of_those_claims(store) -> None:
    await store.insert_messages([NewMessage(1, 1, f"+5989834448{i}", f"m{i}") for i in range(6)])
    now = time.time()
    lost = await store.claim("n", 3, now, now + 60, [1], token=11)
    kept = await store.claim("n", 3, now, now + 60, [1], token=12)
    await store.mark_started([(lost[0].id, "loop-a")], now)
    assert await store.release_claims([11], time.time()) == 2
    assert await store.release_claims([], time.time()) == 0
    states = {m.id: (await store.get_message(None, m.id)).state for m in lost + kept}
    assert states == {lost[0].id: State.SENDING, lost[1].id: State.TO_PROCESS,
                      lost[2].id: State.TO_PROCESS,
                      **{m.id: State.SENDING for m in kept}}
    events = await store.message_events(lost[1].id)
    assert events[-1].state == State.TO_PROCESS and "never sent" in events[-1].note


async def test_a_paced_campaign_keeps_its_pace_across_daemons(make_gateway, backend: str,
                                                              tmp_path: Path) -> None:
    nodes: list[Running] = []
    for n in range(3 if backend == "postgres" else 1):
        nodes.append(await make_gateway(
            dispatcher={"node_name": f"pace-{n}"},
            channels=loop_channels(tmp_path / f"sent-{n}.jsonl",
                                   names=(f"n{n}-a", f"n{n}-b"), delivery_reports=False)))
    first = nodes[0]
    campaign = await paced_campaign(first.store, GAP_MS)
    for gw in nodes:
        await gw.app.services.campaigns.reload()
    ids = [m.id for m in await first.store.insert_messages(
        [NewMessage(1, campaign, f"+59898{i:06d}", f"paced {i}") for i in range(MESSAGES)])]

    async def all_sent() -> bool:
        return all(m.state == State.SENT for m in await messages(first, ids))
    assert await settle(all_sent, MESSAGES * GAP_MS / 1000 * 2 + 5), "not all were sent"

    sent_at = sorted(m.sent_at for m in await messages(first, ids))
    claimed_at = sorted([await claimed(first, i) for i in ids])
    send_gaps = [b - a for a, b in zip(sent_at, sent_at[1:], strict=False)]
    claim_gaps = [b - a for a, b in zip(claimed_at, claimed_at[1:], strict=False)]
    span = sent_at[-1] - sent_at[0]
    sends = Counter[int]()
    per_node = []
    for n in range(len(nodes)):
        mine = sent_ids(tmp_path / f"sent-{n}.jsonl")
        per_node.append(sum(mine.values()))
        sends += mine
    ideal = (MESSAGES - 1) * GAP_MS / 1000
    print(f"\n{len(nodes)} daemon(s) on {backend}, {MESSAGES} messages {GAP_MS} ms apart: "
          f"first to last send {span:.2f} s (configured {ideal:.2f} s); smallest gap between "
          f"sends {min(send_gaps) * 1000:.0f} ms, between claims {min(claim_gaps) * 1000:.1f} "
          f"ms; largest {max(send_gaps) * 1000:.0f} ms; sends per daemon {per_node}")
    assert set(sends) == set(ids) and max(sends.values()) == 1, "each sent exactly once"
    assert min(claim_gaps) >= GAP_MS / 1000 - 1e-6, claim_gaps
    assert min(send_gaps) >= GAP_MS / 1000 - SEND_SLACK_S, send_gaps
    assert ideal - SEND_SLACK_S <= span <= ideal + 1.0, span


async def test_a_shorter_gap_holds_at_once_on_a_running_daemon(make_gateway,
                                                              tmp_path: Path) -> None:
    """An hour's gap shortened to 100 ms: the daemon does not wait out the hour."""
    gw = await make_gateway(channels=loop_channels(tmp_path / "sent.jsonl",
                                                   delivery_reports=False))
    campaign = await paced_campaign(gw.store, 3_600_000)
    await gw.app.services.campaigns.reload()
    ids = [m.id for m in await gw.store.insert_messages(
        [NewMessage(1, campaign, f"+59898{i:06d}", f"slow {i}") for i in range(3)])]

    async def sent() -> int:
        return sum(m.state == State.SENT for m in await messages(gw, ids))
    assert await settle(lambda: _at_least(sent, 1), 5), "the first slot was free"
    await asyncio.sleep(0.3)
    assert await sent() == 1, "the next waits for its slot"
    await gw.store.update_campaign(campaign, time_between_ms=100)
    changed = time.monotonic()
    await gw.app.services.campaigns.reload()
    assert await settle(lambda: _at_least(sent, 3), 5), "the new gap was not applied"
    print(f"\ngap shortened from 1 h to 100 ms: the other two sent "
          f"{time.monotonic() - changed:.2f} s later")


async def _at_least(count, n: int) -> bool:
    return await count() >= n


async def claimed(gw: Running, message_id: int) -> float:
    events = await gw.store.message_events(message_id)
    return next(e.at for e in events if e.state == State.SENDING)


async def messages(gw: Running, ids: list[int]) -> list:
    return [await gw.store.get_message(None, i) for i in ids]
