"""An in-memory view of the campaigns table, kept fresh for the hot paths.

Intake and the dispatcher ask about campaigns for every message; they read
this book, which reloads the table at most every `refresh_s` (and on a
miss), so a campaign started or stopped from the CLI or another node takes
effect before the next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.schedule import Schedule, is_open, parse_schedule
from spool.base import Campaign, Store


class CampaignBook:
    def __init__(self, store: Store, *, refresh_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._clock = clock
        self._by_id: dict[int, Campaign] = {}
        self._by_name: dict[tuple[int, str], Campaign] = {}
        self._schedules: dict[int, Schedule | None] = {}
        self._loaded_at = float("-inf")
        self._reloading = asyncio.Lock()

    async def reload(self) -> None:
        # One at a time: a reload that read the table before a change (the
        # dispatcher's periodic one) must not land after the reload that
        # follows the change (a campaign stopped through the API), or the
        # stopped campaign would be claimed from again.
        async with self._reloading:
            campaigns = await self._store.list_campaigns()
            self._by_id = {c.id: c for c in campaigns}
            self._by_name = {(c.tenant, c.name): c for c in campaigns}
            self._schedules = {c.id: _schedule(c) for c in campaigns}
            self._loaded_at = self._clock()

    async def fresh(self) -> None:
        if self._clock() - self._loaded_at >= self._refresh_s:
            await self.reload()

    async def by_name(self, tenant: int, name: str) -> Campaign | None:
        found = self._by_name.get((tenant, name))
        if found is None and self._clock() - self._loaded_at > 0.05:
            await self.reload()  # created a moment ago, maybe by another process
            found = self._by_name.get((tenant, name))
        return found

    def by_id(self, campaign_id: int) -> Campaign | None:
        return self._by_id.get(campaign_id)

    def all(self) -> list[Campaign]:
        return list(self._by_id.values())

    def dncr(self, campaign_id: int) -> bool:
        campaign = self._by_id.get(campaign_id)
        return campaign is None or campaign.dncr_check

    def on_schedule(self, campaign_id: int, now: float) -> bool:
        return is_open(self._schedules.get(campaign_id), now)

    def sendable(self, now: float) -> list[int]:
        """Campaigns whose messages may be claimed now: enabled and on schedule."""
        return [c.id for c in self._by_id.values()
                if c.enabled and is_open(self._schedules.get(c.id), now)]


def _schedule(campaign: Campaign) -> Schedule | None:
    if not campaign.schedule:
        return None
    try:
        return parse_schedule(campaign.schedule)
    except ValueError:
        # Stored schedules are validated on write; one that no longer parses
        # (an old tz name) must not open the campaign round the clock.
        return parse_schedule({"timezone": "UTC", "windows": []})
