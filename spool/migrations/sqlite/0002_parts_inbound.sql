-- smsgw schema 2: per-part delivery tracking and inbound messages.

-- One row per part of a sent message on channels that report per part.
-- A modem's message reference wraps at 256, so reports are matched by
-- (channel, ref, destination) to the newest send.
CREATE TABLE message_parts (
    message_id  INTEGER NOT NULL,
    part        INTEGER NOT NULL,
    channel     TEXT NOT NULL,
    ref         TEXT NOT NULL,
    destination TEXT NOT NULL,
    -- NULL: no report yet; 1 delivered; 0 failed
    delivered   INTEGER,
    sent_at     REAL NOT NULL,
    reported_at REAL,
    PRIMARY KEY (message_id, part)
) WITHOUT ROWID;
CREATE INDEX ix_parts_ref ON message_parts (channel, ref, destination, sent_at);

CREATE TABLE inbound (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant       INTEGER,
    campaign     INTEGER,
    channel      TEXT NOT NULL,
    sender       TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    text         TEXT NOT NULL,
    provider_ref TEXT,
    -- the outgoing message this answers, when one was found
    reply_to     INTEGER,
    received_at  REAL NOT NULL,
    data         TEXT
);
-- The same message read twice (modem reset, provider retry) is stored once.
CREATE UNIQUE INDEX ux_inbound_ref ON inbound (channel, provider_ref)
    WHERE provider_ref IS NOT NULL;
CREATE INDEX ix_inbound_tenant ON inbound (tenant, id);
CREATE INDEX ix_inbound_sender ON inbound (sender, id);
