"""Numbers a provider refuses to message from one of our senders.

Twilio answers 21610 ("Attempt to send to unsubscribed recipient") once a
customer has texted STOP to a sender (a number or a Messaging Service):
every later message from it is refused until they text START. Retrying is
useless, so the refusal becomes a blacklist entry scoped to that channel
(`sender_stop:<channel>`), the same shape as a WhatsApp marketing stop.
The dispatcher then routes the number's messages around that channel, and
blocks them when no other channel of their pool is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog

from drivers.base import SenderStop
from gateway.router import Router
from spool.base import Claimed, Store

log = structlog.get_logger("smsgw.sender_stops")

SENDER_STOPPED = "recipient unsubscribed from every sender of its pool"

PoolOf = Callable[[Claimed], Sequence[str]]


class SenderStops:
    def __init__(self, store: Store, router: Router) -> None:
        self._store = store
        self._router = router

    async def record(self, stop: SenderStop) -> None:
        """The channel's provider said `stop.destination` unsubscribed from it."""
        new = await self._store.stop_sender(stop.destination, stop.channel, stop.at,
                                            note=f"unsubscribed: {stop.detail}")
        # The number in clear, as inbound.opt_out has it: the operator's
        # answer to "why does this number get nothing through this channel".
        log.info("channel.sender_stop", channel=stop.channel, destination=stop.destination,
                 new=new, detail=stop.detail)

    async def narrowed(self, batch: Sequence[Claimed], pool_of: PoolOf
                       ) -> dict[int, tuple[str, ...]]:
        """For each SMS of `batch` whose number is stopped on a channel of its
        pool: the channels left (empty: none). Only channels that can say
        so are asked about, so a gateway without them pays no lookup."""
        pools = {m.id: [r.name for r in self._router.pool(pool_of(m), m.kind, m.tenant)]
                 for m in batch if m.kind == "sms"}
        asked = {r.name for r in self._router.runners.values()
                 if getattr(r.channel, "reports_sender_stops", False)}
        pairs = {(m.destination, name) for m in batch if m.id in pools
                 for name in pools[m.id] if name in asked}
        if not pairs:
            return {}
        stopped = await self._store.senders_stopped(sorted(pairs))
        out: dict[int, tuple[str, ...]] = {}
        for m in batch:
            names = pools.get(m.id, [])
            left = tuple(n for n in names if (m.destination, n) not in stopped)
            if len(left) < len(names):
                out[m.id] = left
        return out
