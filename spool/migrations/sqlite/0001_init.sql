-- smsgw schema 1: tenants, campaigns, the spool, its history, the blacklist.
-- Times are unix seconds (REAL). Campaign 0 in the blacklist means global.

CREATE TABLE tenants (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT NOT NULL UNIQUE,
    webhook_url   TEXT,
    webhook_secret TEXT,
    created_at    REAL NOT NULL
);

-- Keys are stored as SHA-256 of a 256-bit random key: a leak of this table
-- does not leak usable keys, and lookup stays an index probe.
CREATE TABLE api_keys (
    key_hash    TEXT PRIMARY KEY,
    tenant      INTEGER NOT NULL REFERENCES tenants(id),
    label       TEXT,
    created_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE campaigns (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant              INTEGER NOT NULL REFERENCES tenants(id),
    name                TEXT NOT NULL,
    enabled             INTEGER NOT NULL DEFAULT 1,
    channels            TEXT NOT NULL DEFAULT '[]',
    priority            INTEGER NOT NULL DEFAULT 0,
    in_doubt            TEXT NOT NULL DEFAULT 'resend' CHECK (in_doubt IN ('resend', 'hold')),
    dncr_check          INTEGER NOT NULL DEFAULT 1,
    time_between_ms     INTEGER NOT NULL DEFAULT 0,
    schedule            TEXT,
    out_of_time_message TEXT,
    created_at          REAL NOT NULL,
    UNIQUE (tenant, name)
);

CREATE TABLE sms_spool (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant          INTEGER NOT NULL,
    campaign        INTEGER NOT NULL,
    destination     TEXT NOT NULL,
    message         TEXT NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    state           INTEGER NOT NULL,
    channel         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    claimed_by      TEXT,
    claim_until     REAL,
    -- Set just before a channel is asked to send: after a crash it tells a
    -- row that may have gone out (-> 9) from one that never left (-> 1).
    started_at      REAL,
    provider_ref    TEXT,
    error           TEXT,
    note            TEXT,
    agent           TEXT,
    data            TEXT,
    journey_id      INTEGER,
    kind            TEXT NOT NULL DEFAULT 'sms',
    cost            REAL NOT NULL DEFAULT 0,
    segments        INTEGER NOT NULL DEFAULT 1,
    encoding        TEXT NOT NULL DEFAULT 'gsm7',
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    sent_at         REAL,
    delivered_at    REAL,
    idempotency_key TEXT
);

-- Claims probe one campaign at a time in priority order: the cost of a
-- claim depends on the batch, not on how many rows wait behind it.
CREATE INDEX ix_spool_claim ON sms_spool (campaign, priority DESC, id) WHERE state = 1;
CREATE INDEX ix_spool_leases ON sms_spool (claim_until) WHERE state = 2;
CREATE INDEX ix_spool_ref ON sms_spool (provider_ref) WHERE provider_ref IS NOT NULL;
CREATE INDEX ix_spool_tenant ON sms_spool (tenant, id);
CREATE INDEX ix_spool_destination ON sms_spool (destination, id);
CREATE INDEX ix_spool_sent ON sms_spool (sent_at) WHERE sent_at IS NOT NULL;
CREATE UNIQUE INDEX ux_spool_idempotency ON sms_spool (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE message_events (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL,
    at          REAL NOT NULL,
    state       INTEGER NOT NULL,
    note        TEXT,
    channel     TEXT,
    node        TEXT
);
CREATE INDEX ix_events_message ON message_events (message_id, id);

-- Live counts per campaign and state, kept by the triggers below so that
-- status, metrics and back-pressure never count the spool.
CREATE TABLE spool_counts (
    campaign  INTEGER NOT NULL,
    state     INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    PRIMARY KEY (campaign, state)
) WITHOUT ROWID;

CREATE TABLE campaign_costs (
    campaign  INTEGER PRIMARY KEY,
    cost      REAL NOT NULL
);

CREATE TRIGGER tr_spool_insert AFTER INSERT ON sms_spool BEGIN
    INSERT INTO message_events (message_id, at, state, note, channel, node)
        VALUES (NEW.id, NEW.created_at, NEW.state, NEW.note, NEW.channel, NULL);
    INSERT INTO spool_counts (campaign, state, n) VALUES (NEW.campaign, NEW.state, 1)
        ON CONFLICT (campaign, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tr_spool_state AFTER UPDATE OF state ON sms_spool
WHEN NEW.state IS NOT OLD.state BEGIN
    INSERT INTO message_events (message_id, at, state, note, channel, node)
        VALUES (NEW.id, NEW.updated_at, NEW.state, NEW.note, NEW.channel, NEW.claimed_by);
    UPDATE spool_counts SET n = n - 1 WHERE campaign = OLD.campaign AND state = OLD.state;
    INSERT INTO spool_counts (campaign, state, n) VALUES (NEW.campaign, NEW.state, 1)
        ON CONFLICT (campaign, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER tr_spool_cost AFTER UPDATE OF cost ON sms_spool
WHEN NEW.cost IS NOT OLD.cost BEGIN
    INSERT INTO campaign_costs (campaign, cost) VALUES (NEW.campaign, NEW.cost - OLD.cost)
        ON CONFLICT (campaign) DO UPDATE SET cost = cost + excluded.cost;
END;

CREATE TABLE blacklist (
    destination TEXT NOT NULL,
    campaign    INTEGER NOT NULL DEFAULT 0,
    note        TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (destination, campaign)
) WITHOUT ROWID;

-- Spool-folder files: rows up to `line` are committed together with this
-- row, so a restart resumes a file exactly where it stopped.
CREATE TABLE imports (
    key         TEXT PRIMARY KEY,
    line        INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    imported    INTEGER NOT NULL DEFAULT 0,
    blocked     INTEGER NOT NULL DEFAULT 0,
    invalid     INTEGER NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL
) WITHOUT ROWID;

INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', (julianday('now') - 2440587.5) * 86400.0);
INSERT INTO campaigns (tenant, name, created_at) VALUES (1, 'default', (julianday('now') - 2440587.5) * 86400.0);
