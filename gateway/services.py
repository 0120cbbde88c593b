"""What the HTTP layer, the CLI and the importers share of a running gateway."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.base import WebhookChannel
from gateway.auth import Authenticator, OpenNetworks, RateLimiter
from gateway.campaigns import CampaignBook
from gateway.clicks import ClickRecorder, LinkCache, MissLimiter
from gateway.intake import Intake
from gateway.monitor import Monitor
from gateway.router import Router
from gateway.settings import Settings
from spool.base import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    campaigns: CampaignBook
    intake: Intake
    auth: Authenticator
    open_networks: OpenNetworks
    router: Router
    links: LinkCache
    clicks: ClickRecorder
    miss_limiter: MissLimiter
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0, 1))
    hooks: dict[str, WebhookChannel] = field(default_factory=dict)
    ready: bool = False
    monitor: Monitor | None = None  # rates and metrics; only the daemon collects them
