"""The storage contract: state codes, records, and the `Store` protocol.

`Store` is the only door to the database. Every method that changes a
message's state does it in one transaction together with its history row
(`message_events`, written by a trigger), so a state change is durable
or did not happen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal, Protocol


class State(IntEnum):
    # 0, 1 and 3 are the legacy dialer's codes and keep their numbers.
    NONE = 0
    TO_PROCESS = 1
    SENDING = 2
    BLOCKED = 3
    SENT = 4
    DELIVERED = 5
    FAILED = 6
    INVALID = 7
    CANCELLED = 8
    UNCONFIRMED = 9


FINAL_STATES = frozenset({State.BLOCKED, State.DELIVERED, State.FAILED, State.INVALID,
                          State.CANCELLED})
InDoubtPolicy = Literal["resend", "hold"]


class StoreError(Exception):
    """The database could not do what was asked; the caller may retry later."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    """The row exists but is in a state that does not allow the change."""

    def __init__(self, message: str, *, state: State | None = None) -> None:
        super().__init__(message)
        self.state = state


class SchemaTooNew(StoreError):
    pass


class RowRejected(StoreError):
    """The database refused a row for what it holds (a constraint, a
    character it cannot store): the row is at fault, not the store, and the
    other rows of the transaction can go in without it."""


class KeyReused(RowRejected):
    """An idempotency key already stored for a different request."""

    def __init__(self, tenant: int, key: str) -> None:
        super().__init__("idempotency key reused with a different request")
        self.tenant = tenant
        self.key = key


@dataclass(frozen=True, slots=True)
class JourneyStep:
    """What the scheduler decided for a due journey: a next message (or
    none), the journey's new state, and whether it waits again."""

    journey: int
    expected_step: int  # guards against two nodes advancing the same journey
    state: str
    message: NewMessage | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Fallback:
    """A failed marketing template that the utility fallback may recover."""

    message_id: int
    tenant: int
    campaign: int
    destination: str
    state: str  # PENDING, ASKED, ANSWERED, EXPIRED, SKIPPED
    error_code: str | None
    until: float | None
    utility_id: int | None = None


@dataclass(frozen=True, slots=True)
class RecentClick:
    at: float
    journey: int
    campaign: int
    destination: str
    url: str
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class CostLine:
    campaign: int
    kind: str
    messages: int
    cost: float


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str
    webhook_url: str | None = None
    disabled: bool = False  # its keys are refused until it is enabled again
    removed: bool = False  # keys gone, row kept so that history still names it


API_KEY_ID_CHARS = 12  # hex digits of the key's hash that name it in listings


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One of a tenant's keys, named without being usable: `id` is the start
    of the key's SHA-256, so `smsgw tenant key revoke --id` needs no secret."""

    id: str
    tenant: int
    label: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    tenant: int
    name: str
    enabled: bool = True
    channels: tuple[str, ...] = ()  # empty: every SMS channel
    priority: int = 0
    in_doubt: InDoubtPolicy = "resend"
    dncr_check: bool = True
    time_between_ms: int = 0
    schedule: dict[str, Any] | None = None
    out_of_time_message: str | None = None
    auto_replies: dict[str, str] | None = None  # keyword -> reply text
    smart: dict[str, Any] | None = None  # journey policy (links, reminders, WhatsApp)
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class JourneySpec:
    """A journey to open with a message: its policy and the short links
    already written into the message text (code -> original URL)."""

    policy: dict[str, Any]
    wait_s: float
    links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Journey:
    id: int
    tenant: int
    campaign: int
    destination: str
    state: str
    policy: dict[str, Any]
    wait_s: float
    step: int
    next_at: float | None
    note: str | None
    created_at: float
    updated_at: float
    clicked_at: float | None
    links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LinkTarget:
    code: str
    url: str
    journey: int
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Click:
    code: str
    journey: int
    at: float
    method: str
    ip: str | None
    user_agent: str | None
    bot: bool


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message as intake accepted it: already normalised and classified."""

    tenant: int
    campaign: int
    destination: str
    message: str
    state: State = State.TO_PROCESS
    priority: int = 0
    error: str | None = None
    agent: str | None = None
    data: dict[str, Any] | None = None
    kind: str = "sms"
    idempotency_key: str | None = None
    segments: int = 1
    encoding: str = "gsm7"
    journey: JourneySpec | None = None  # open a journey with this message
    journey_id: int | None = None  # a later step of an existing journey
    # What the client asked for under `idempotency_key` (a hash): the same
    # key with another fingerprint is refused (KeyReused), not deduplicated.
    fingerprint: str | None = None


@dataclass(frozen=True, slots=True)
class Inserted:
    id: int
    state: State
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    tenant: int
    campaign: int
    destination: str
    message: str
    priority: int
    state: State
    channel: str | None
    attempts: int
    next_attempt_at: float
    provider_ref: str | None
    error: str | None
    agent: str | None
    data: dict[str, Any] | None
    kind: str
    cost: float
    segments: int
    created_at: float
    sent_at: float | None
    delivered_at: float | None
    idempotency_key: str | None = None
    journey_id: int | None = None


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row the dispatcher holds under lease (state 2)."""

    id: int
    tenant: int
    campaign: int
    destination: str
    message: str
    kind: str
    attempts: int
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PacedClaim:
    """What a paced campaign's claim got: at most one row, and when the
    campaign's next slot is due (None: no such campaign)."""

    claimed: list[Claimed]
    next_slot_at: float | None


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    state: State
    note: str | None
    channel: str | None


# What became of a claimed row; recorded in batches by `Store.record`.
@dataclass(frozen=True, slots=True)
class Sent:
    id: int
    channel: str
    provider_ref: str
    cost: float
    at: float
    delivered: bool = False
    # Per-part references (multipart SMS on a modem), kept for delivery reports.
    part_refs: tuple[str, ...] = ()
    destination: str = ""


@dataclass(frozen=True, slots=True)
class Retry:
    id: int
    channel: str | None
    error: str
    next_attempt_at: float
    # False when the row was never handed to a channel (no capacity, shutdown).
    counts_as_attempt: bool = True


@dataclass(frozen=True, slots=True)
class Failed:
    id: int
    channel: str | None
    error: str


@dataclass(frozen=True, slots=True)
class Blocked:
    id: int
    reason: str


# A customer's "stop marketing messages" on WhatsApp (Meta's user_preferences
# webhook, or error 131050) is a blacklist entry of this scope: it holds back
# marketing templates through that channel (one business number) and nothing else.
MARKETING_SCOPE_PREFIX = "whatsapp_marketing:"
MARKETING_STOPPED = "customer stopped WhatsApp marketing messages"


def marketing_scope(channel: str) -> str:
    return MARKETING_SCOPE_PREFIX + channel


# A number the provider refuses to message from one sender because the
# customer unsubscribed there (Twilio 21610: they answered STOP to that
# number or Messaging Service): nothing more goes to it through that channel.
SENDER_SCOPE_PREFIX = "sender_stop:"


def sender_scope(channel: str) -> str:
    return SENDER_SCOPE_PREFIX + channel


Outcome = Sent | Retry | Failed | Blocked


@dataclass(frozen=True, slots=True)
class Recovered:
    requeued: int = 0  # never handed to a channel: back to 1
    in_doubt: int = 0  # send had started: to 9 ...
    resent: int = 0  # ... and back to 1 by the campaign's `resend` policy


@dataclass(frozen=True, slots=True)
class Report:
    """A delivery report, matched by the channel's own reference: the
    message's, or one part's (then with `destination`, newest send first)."""

    channel: str
    provider_ref: str
    delivered: bool
    error: str | None
    at: float
    destination: str | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class InboundRecord:
    channel: str
    sender: str
    recipient: str
    text: str
    received_at: float
    provider_ref: str | None = None
    tenant: int | None = None
    campaign: int | None = None
    reply_to: int | None = None
    data: dict[str, Any] | None = None
    id: int = 0
    conversation: int | None = None
    # what the gateway did about it: opt_out, auto_reply, out_of_time
    action: str | None = None
    agent: str | None = None  # the agent of the message it answers


@dataclass(frozen=True, slots=True)
class Conversation:
    id: int
    tenant: int
    campaign: int | None
    customer: str
    channel: str
    agent: str | None
    started_at: float
    last_at: float
    inbound: int


@dataclass(frozen=True, slots=True)
class InboundFilter:
    tenant: int
    start: float | None = None
    end: float | None = None
    origin: str | None = None
    campaign: int | None = None
    agent: str | None = None
    conversation: int | None = None
    after_id: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    event_id: str
    tenant: int
    type: str
    payload: str  # JSON text, sent as it is stored
    created_at: float
    attempts: int


@dataclass(frozen=True, slots=True)
class ListFilter:
    tenant: int
    campaign: int | None = None
    state: State | None = None
    since: float | None = None
    after_id: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class CampaignCounts:
    campaign: int
    by_state: dict[int, int] = field(default_factory=dict)
    cost: float = 0.0


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """How far a spool-folder file got; rows up to `line` are committed."""

    key: str
    line: int
    done: bool
    imported: int = 0
    blocked: int = 0
    invalid: int = 0


class Store(Protocol):
    """The only door to the database. Implementations: sqlite, postgres."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def migrate(self) -> int:
        """Apply pending numbered migrations; return the schema version."""
        ...
    async def ping(self) -> None: ...
    async def check_writes(self) -> None:
        """Raise StoreError while writes fail (full disk, locked, away), as the
        store's own recent writes show; a probe write only when they are stale."""
        ...
    async def schema_version(self) -> int: ...

    # tenants
    async def create_tenant(self, name: str, key_hash: str,
                            webhook_url: str | None = None) -> Tenant: ...
    async def add_api_key(self, tenant: int, key_hash: str, label: str | None = None) -> None: ...
    async def tenant_by_key_hash(self, key_hash: str) -> Tenant | None: ...
    async def tenant_by_name(self, name: str) -> Tenant | None: ...
    async def list_tenants(self) -> list[Tenant]: ...

    # who may call: every change bumps auth_generation, which daemons poll
    # (at most once a second) to drop their key caches
    async def list_api_keys(self, tenant: int) -> list[ApiKey]: ...
    async def revoke_api_keys(self, tenant: int, id_prefix: str | None) -> int:
        """Delete the tenant's keys whose id starts with `id_prefix` (None: all).
        Raises NotFound when none matches, Conflict when a prefix names several."""
        ...
    async def set_tenant_disabled(self, tenant: int, disabled: bool) -> None: ...
    async def remove_tenant(self, tenant: int, *, force: bool) -> int:
        """Delete its keys and webhook, stop its campaigns, keep its history.
        Unfinished messages or journeys raise Conflict unless `force`, which
        cancels them; returns how many messages were cancelled."""
        ...
    async def auth_generation(self) -> int: ...

    # dashboard sessions, by the SHA-256 of their random id
    async def start_session(self, id_hash: str, user: str, expires_at: float) -> None: ...
    async def session_user(self, id_hash: str, now: float) -> str | None: ...
    async def end_sessions(self, *, id_hash: str | None = None,
                           keep_users: Sequence[str] | None = None) -> int:
        """End one session (`id_hash`) or those of users not in `keep_users`."""
        ...

    # campaigns
    async def create_campaign(self, campaign: Campaign) -> Campaign: ...
    async def campaign_by_name(self, tenant: int, name: str) -> Campaign | None: ...
    async def campaign_by_id(self, campaign_id: int) -> Campaign | None: ...
    async def list_campaigns(self, tenant: int | None = None) -> list[Campaign]: ...
    async def update_campaign(self, campaign_id: int, **changes: Any) -> Campaign: ...
    async def cancel_unprocessed(self, campaign_id: int, note: str) -> int: ...

    # intake
    async def insert_messages(self, messages: Sequence[NewMessage],
                              *, import_progress: ImportProgress | None = None
                              ) -> list[Inserted]: ...
    async def pending_count(self) -> int: ...

    # queries and operator actions
    async def get_message(self, tenant: int | None, message_id: int) -> Message: ...
    async def message_events(self, message_id: int) -> list[Event]: ...
    async def list_messages(self, where: ListFilter) -> list[Message]: ...
    async def cancel_message(self, tenant: int | None, message_id: int) -> Message: ...
    async def release_message(self, tenant: int | None, message_id: int) -> Message: ...
    async def counts(self) -> list[CampaignCounts]: ...
    async def sent_per_channel_since(self, since: float) -> dict[str, int]: ...

    # dispatcher
    # A claim's `token` is stored on the rows it takes: a claim that raised
    # may still have committed (the connection broke after the COMMIT), and
    # its rows are then found again by `release_claims`.
    async def claim(self, node: str, limit: int, now: float, lease_until: float,
                    campaigns: Sequence[int], *, token: int | None = None) -> list[Claimed]: ...
    async def claim_paced(self, node: str, now: float, lease_until: float, campaign: int,
                          *, token: int | None = None) -> PacedClaim:
        """One row of a paced campaign, if its slot (`time_between_ms` after
        the last) is due; the slot is taken in the same transaction, so the
        pace holds across every daemon on the spool."""
        ...
    async def release_claims(self, tokens: Sequence[int], now: float) -> int:
        """Return to the queue the rows of these claims that are still
        claimed and were never started (their claimer never received them)."""
        ...
    async def mark_started(self, started: Sequence[tuple[int, str]], now: float) -> None:
        """(id, channel) pairs about to be handed to their channel."""
        ...
    async def record(self, outcomes: Sequence[Outcome], now: float, *,
                     started: Sequence[tuple[int, str]] = ()) -> None:
        """Results of sends, and `started` marks of sends about to begin,
        in one transaction (the hot path's only write per cycle)."""
        ...
    async def record_reports(self, reports: Sequence[Report]) -> list[Report]:
        """Apply delivery reports; return those that matched no sent row (yet)."""
        ...
    async def renew_leases(self, node: str, lease_until: float) -> int: ...
    async def recover(self, now: float, *, node: str | None = None) -> Recovered:
        """Return expired leases (or every lease of `node`) to the queue."""
        ...

    # inbound
    async def store_inbound(self, record: InboundRecord) -> tuple[int, bool]:
        """Store once per (channel, provider_ref); return (id, was_duplicate)."""
        ...
    async def inbound_by_ref(self, channel: str, provider_ref: str) -> int | None: ...
    async def last_sent_on(self, destination: str, channel: str,
                           tenants: Collection[int] = ()) -> Message | None:
        """The newest message that went out to `destination` over `channel`
        (of one of `tenants`, if given): what a reply on that channel answers.
        One index probe (ix_spool_reply)."""
        ...
    async def list_inbound(self, where: InboundFilter) -> list[InboundRecord]: ...
    async def last_inbound_at(self, sender: str, channels: Sequence[str]) -> float | None: ...
    async def list_conversations(self, where: InboundFilter) -> list[Conversation]: ...
    async def get_conversation(self, tenant: int, conversation_id: int) -> Conversation: ...

    # smart messaging
    async def link_target(self, code: str) -> LinkTarget | None: ...
    async def record_clicks(self, clicks: Sequence[Click]) -> list[int]:
        """Store clicks; return the journeys that the first human click ended
        (each also gets a `link.clicked` event in the same transaction)."""
        ...
    async def due_journeys(self, now: float, limit: int) -> list[Journey]: ...
    async def advance_journeys(self, steps: Sequence[JourneyStep], now: float) -> int: ...
    async def get_journey(self, tenant: int | None, journey_id: int) -> Journey: ...
    async def journey_messages(self, journey_id: int) -> list[Message]: ...
    async def clicked_by_campaign(self, tenant: int | None) -> dict[int, int]:
        """Journeys ended by a human click, per campaign (tenant None: all)."""
        ...
    async def recent_clicks(self, tenant: int | None, limit: int) -> list[RecentClick]: ...
    async def journey_clicks(self, journey_id: int) -> tuple[int, int]:
        """(human, bot) visits of the journey's links."""
        ...
    async def cancel_journey(self, tenant: int, journey_id: int, note: str) -> Journey: ...
    async def fallbacks(self, state: str, limit: int) -> list[Fallback]: ...
    async def fallback_for(self, destination: str, channel: str,
                           now: float) -> Fallback | None:
        """The newest ASKED fallback for `destination` still inside its window
        whose question went out over `channel`: an answer counts on the
        business number that asked, never on another tenant's."""
        ...
    async def set_fallback(self, message_id: int, state: str, now: float, *,
                           utility_id: int | None = None, until: float | None = None,
                           session_ids: Sequence[int] = ()) -> bool:
        """Move a fallback on; False when it was no longer in the expected state."""
        ...
    async def expire_fallbacks(self, now: float) -> int: ...
    async def fallback_of(self, message_id: int) -> Fallback | None: ...
    async def cost_report(self, tenant: int, campaign: int | None, since: float | None,
                          until: float | None) -> list[CostLine]: ...

    # tenant webhooks (the outbox is filled by the database in the same
    # transaction as the change it reports)
    async def set_webhook(self, tenant: int, url: str | None, secret: str | None) -> None: ...
    async def webhook_target(self, tenant: int) -> tuple[str, str] | None: ...
    async def claim_webhooks(self, now: float, limit: int,
                             lease_s: float) -> list[OutboxEvent]: ...
    async def webhook_delivered(self, event: int, now: float) -> None: ...
    async def webhook_failed(self, event: int, error: str, next_attempt_at: float | None
                             ) -> None:
        """Retry at `next_attempt_at`; None: give up (kept as dead)."""
        ...
    async def outbox_backlog(self) -> int: ...

    # blacklist (campaign None: global)
    async def blacklist_add(self, entries: Sequence[tuple[str, int | None]],
                            note: str | None = None) -> int: ...
    async def blacklist_remove(self, entries: Sequence[tuple[str, int | None]]) -> int: ...
    async def blacklist_list(self, campaign: int | None = None, *, limit: int = 1000,
                             after: str = "", scope: str = "") -> list[tuple[str, int | None]]:
        """One page of the list; `scope` "whatsapp_marketing:<channel>" lists
        that channel's marketing stops instead."""
        ...
    async def blacklisted(self, pairs: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        """Which (destination, campaign) pairs are on the global or campaign list
        (scope '' only: a marketing stop blocks no SMS)."""
        ...
    # WhatsApp marketing stops: entries of `marketing_scope(channel)`, written
    # by Meta's word only. `at` is when the customer changed their mind: a
    # resume lifts a stop only if the stop is not newer.
    async def stop_marketing(self, destination: str, channel: str, at: float,
                             note: str) -> bool:
        """True when the number was not stopped on that channel yet."""
        ...
    async def resume_marketing(self, destination: str, channel: str, at: float) -> bool:
        """True when a stop was lifted."""
        ...
    async def marketing_stopped(self, pairs: Sequence[tuple[str, str]]
                                ) -> set[tuple[str, str]]:
        """Which (destination, WhatsApp channel) pairs the customer stopped."""
        ...
    # Per-sender stops (`sender_scope(channel)`), written by the provider's word.
    async def stop_sender(self, destination: str, channel: str, at: float,
                          note: str) -> bool:
        """True when the number was not stopped on that channel yet."""
        ...
    async def senders_stopped(self, pairs: Sequence[tuple[str, str]]
                              ) -> set[tuple[str, str]]:
        """Which (destination, channel) pairs the provider said are unsubscribed."""
        ...
    async def resume_sender(self, destination: str, channel: str, at: float) -> bool:
        """The customer opted in again on that channel: True when a stop was lifted."""
        ...

    # spool-folder imports
    async def import_progress(self, key: str) -> ImportProgress | None: ...
    async def finish_import(self, progress: ImportProgress) -> None: ...

    def iter_messages(self, where: ListFilter) -> AsyncIterator[Message]: ...
