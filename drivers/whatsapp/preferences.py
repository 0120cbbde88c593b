"""A customer's WhatsApp marketing preference, as Meta tells it: the
`user_preferences` webhook ("stop" / "resume" marketing messages from this
business) or a send refused with 131050 ("this recipient has chosen to stop
receiving marketing messages").

It travels to the gateway through `ChannelEvents.inbound` as an
InboundMessage whose `data.type` is "user_preferences". It is not a message
from the customer: the gateway must not store it as one (it would open the
24-hour window), and `preference_of` is how it tells the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drivers.base import InboundMessage

TYPE = "user_preferences"
STOPPED_CODE = "131050"
Value = Literal["stop", "resume"]


@dataclass(frozen=True, slots=True)
class MarketingPreference:
    channel: str
    customer: str  # E.164, as Meta wrote it (wa_id) or as we dialled it (131050)
    value: Value
    at: float  # when the customer changed their mind (Meta's clock)
    detail: str  # Meta's words, or the 131050 error

    def as_inbound(self) -> InboundMessage:
        return InboundMessage(self.channel, self.customer, "", "", at=self.at, data={
            "type": TYPE, "category": "marketing_messages", "value": self.value,
            "detail": self.detail})


def preference_of(message: InboundMessage) -> MarketingPreference | None:
    data = message.data or {}
    if data.get("type") != TYPE or data.get("value") not in ("stop", "resume"):
        return None
    return MarketingPreference(message.channel, message.sender, data["value"], message.at,
                               str(data.get("detail") or ""))
