-- smsgw schema 3: tenant webhooks (outbox), conversations, auto-replies.

-- A conversation is one customer talking with one tenant's campaign.
CREATE TABLE conversations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      INTEGER NOT NULL,
    campaign    INTEGER,
    customer    TEXT NOT NULL,
    channel     TEXT NOT NULL,
    agent       TEXT,
    started_at  REAL NOT NULL,
    last_at     REAL NOT NULL,
    inbound     INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX ux_conversations ON conversations (tenant, customer, coalesce(campaign, 0));
CREATE INDEX ix_conversations_last ON conversations (tenant, last_at);

ALTER TABLE inbound ADD COLUMN conversation INTEGER;
ALTER TABLE inbound ADD COLUMN action TEXT;
CREATE INDEX ix_inbound_conversation ON inbound (conversation, id);

-- Keyword -> reply text, per campaign (JSON object).
ALTER TABLE campaigns ADD COLUMN auto_replies TEXT;

-- Events for tenants' webhooks. Rows are written by triggers in the same
-- transaction as the change they describe: an event can be late, never lost.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    tenant          INTEGER NOT NULL,
    type            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      REAL NOT NULL,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_until   REAL,
    delivered_at    REAL,
    -- set when retries ran out (24 h): kept for inspection, not retried
    dead_at         REAL,
    last_error      TEXT
);
CREATE INDEX ix_outbox_due ON webhook_outbox (next_attempt_at, id)
    WHERE delivered_at IS NULL AND dead_at IS NULL;

CREATE TRIGGER tr_outbox_message AFTER UPDATE OF state ON sms_spool
WHEN NEW.state IN (4, 5, 6) AND NEW.state IS NOT OLD.state
 AND EXISTS (SELECT 1 FROM tenants WHERE id = NEW.tenant AND webhook_url IS NOT NULL)
BEGIN
    INSERT INTO webhook_outbox (event_id, tenant, type, payload, created_at)
    VALUES (lower(hex(randomblob(16))), NEW.tenant,
            CASE NEW.state WHEN 4 THEN 'message.sent' WHEN 5 THEN 'message.delivered'
                           ELSE 'message.failed' END,
            json_object('id', NEW.id,
                        'campaign', (SELECT name FROM campaigns WHERE id = NEW.campaign),
                        'destination', NEW.destination, 'state', NEW.state,
                        'channel', NEW.channel, 'provider_ref', NEW.provider_ref,
                        'error', NEW.error, 'cost', NEW.cost, 'agent', NEW.agent,
                        'data', json(NEW.data), 'at', NEW.updated_at),
            NEW.updated_at);
END;

CREATE TRIGGER tr_outbox_inbound AFTER INSERT ON inbound
WHEN NEW.tenant IS NOT NULL
 AND EXISTS (SELECT 1 FROM tenants WHERE id = NEW.tenant AND webhook_url IS NOT NULL)
BEGIN
    INSERT INTO webhook_outbox (event_id, tenant, type, payload, created_at)
    VALUES (lower(hex(randomblob(16))), NEW.tenant, 'inbound.received',
            json_object('id', NEW.id, 'channel', NEW.channel, 'sender', NEW.sender,
                        'recipient', NEW.recipient, 'text', NEW.text,
                        'campaign', (SELECT name FROM campaigns WHERE id = NEW.campaign),
                        'conversation', NEW.conversation, 'reply_to', NEW.reply_to,
                        'data', json(NEW.data), 'at', NEW.received_at),
            NEW.received_at);
END;
