-- smsgw schema 4: smart messaging. Journeys (SMS reminders escalating to
-- WhatsApp until the customer clicks), short links and their clicks, the
-- smart policy on campaigns, provider error codes on messages, and the
-- WhatsApp utility fallback.

ALTER TABLE campaigns ADD COLUMN smart TEXT;
ALTER TABLE sms_spool ADD COLUMN error_code TEXT;
CREATE INDEX ix_spool_journey ON sms_spool (journey_id, id) WHERE journey_id IS NOT NULL;

CREATE TABLE journeys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      INTEGER NOT NULL,
    campaign    INTEGER NOT NULL,
    destination TEXT NOT NULL,
    -- ACTIVE, CLICKED, ESCALATED, EXHAUSTED, CANCELLED, FAILED
    state       TEXT NOT NULL DEFAULT 'ACTIVE',
    policy      TEXT NOT NULL,
    wait_s      REAL NOT NULL,
    -- messages sent (or attempted) so far; the next step is step + 1
    step        INTEGER NOT NULL DEFAULT 1,
    -- when the next step is due; NULL while a message of the journey is in
    -- flight or when the journey has ended
    next_at     REAL,
    note        TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    clicked_at  REAL
);
CREATE INDEX ix_journeys_due ON journeys (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX ix_journeys_destination ON journeys (destination) WHERE state IN ('ACTIVE', 'ESCALATED');

-- One code per (journey, URL): every retry of the journey reuses it.
CREATE TABLE links (
    code        TEXT PRIMARY KEY,
    journey     INTEGER NOT NULL,
    url         TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL
);
-- rowid keeps the order of the URLs in the text: the first one is {link}.
CREATE INDEX ix_links_journey ON links (journey);

CREATE TABLE clicks (
    id          INTEGER PRIMARY KEY,
    code        TEXT NOT NULL,
    journey     INTEGER NOT NULL,
    at          REAL NOT NULL,
    method      TEXT NOT NULL,
    ip          TEXT,
    user_agent  TEXT,
    -- link-preview fetchers and HEAD requests: recorded, never a read
    bot         INTEGER NOT NULL
);
CREATE INDEX ix_clicks_journey ON clicks (journey, id);

-- A journey's message was accepted by its channel: the wait starts now.
CREATE TRIGGER tr_journey_sent AFTER UPDATE OF state ON sms_spool
WHEN NEW.journey_id IS NOT NULL AND NEW.state IN (4, 5) AND OLD.state NOT IN (4, 5)
BEGIN
    UPDATE journeys SET next_at = coalesce(NEW.sent_at, NEW.updated_at) + wait_s,
                        updated_at = NEW.updated_at
    WHERE id = NEW.journey_id AND state IN ('ACTIVE', 'ESCALATED') AND next_at IS NULL;
END;

-- A failed or invalid step counts as an attempt and the journey moves on.
CREATE TRIGGER tr_journey_failed AFTER UPDATE OF state ON sms_spool
WHEN NEW.journey_id IS NOT NULL AND NEW.state IN (6, 7) AND OLD.state NOT IN (6, 7)
BEGIN
    UPDATE journeys SET next_at = NEW.updated_at, updated_at = NEW.updated_at,
                        note = 'step ' || step || ' failed: ' || coalesce(NEW.error, '')
    WHERE id = NEW.journey_id AND state IN ('ACTIVE', 'ESCALATED') AND next_at IS NULL;
END;

-- A blacklisted number's journey ends.
CREATE TRIGGER tr_journey_blocked AFTER UPDATE OF state ON sms_spool
WHEN NEW.journey_id IS NOT NULL AND NEW.state = 3 AND OLD.state != 3
BEGIN
    UPDATE journeys SET state = 'CANCELLED', next_at = NULL, updated_at = NEW.updated_at,
                        note = 'destination is on the blacklist'
    WHERE id = NEW.journey_id AND state IN ('ACTIVE', 'ESCALATED');
END;

CREATE TRIGGER tr_journey_blacklisted AFTER INSERT ON blacklist
BEGIN
    UPDATE journeys SET state = 'CANCELLED', next_at = NULL, updated_at = NEW.created_at,
                        note = 'destination was blacklisted'
    WHERE destination = NEW.destination AND state IN ('ACTIVE', 'ESCALATED')
      AND (NEW.campaign = 0 OR campaign = NEW.campaign);
    UPDATE sms_spool SET state = 3, note = 'destination was blacklisted',
                         error = 'destination is on the blacklist', updated_at = NEW.created_at
    WHERE journey_id IN (SELECT id FROM journeys WHERE destination = NEW.destination)
      AND destination = NEW.destination AND state IN (0, 1)
      AND (NEW.campaign = 0 OR campaign = NEW.campaign);
END;

-- WhatsApp smart utility fallback: one row per failed marketing template
-- that the fallback may recover.
CREATE TABLE wa_fallbacks (
    message_id   INTEGER PRIMARY KEY,
    tenant       INTEGER NOT NULL,
    campaign     INTEGER NOT NULL,
    destination  TEXT NOT NULL,
    -- PENDING (to decide), ASKED (utility sent), ANSWERED (session sent),
    -- EXPIRED (no answer in 24 h), SKIPPED (not eligible)
    state        TEXT NOT NULL DEFAULT 'PENDING',
    error_code   TEXT,
    utility_id   INTEGER,
    session_ids  TEXT,
    until        REAL,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE INDEX ix_wa_fallbacks_open ON wa_fallbacks (state, destination)
    WHERE state IN ('PENDING', 'ASKED');

CREATE TRIGGER tr_wa_fallback AFTER UPDATE OF state ON sms_spool
WHEN NEW.kind = 'whatsapp' AND NEW.state = 6 AND OLD.state != 6
 AND json_extract(NEW.data, '$.whatsapp.type') = 'template'
 AND json_extract(NEW.data, '$._smsgw.fallback') IS NULL
BEGIN
    INSERT OR IGNORE INTO wa_fallbacks (message_id, tenant, campaign, destination, error_code,
                                        created_at, updated_at)
    VALUES (NEW.id, NEW.tenant, NEW.campaign, NEW.destination, NEW.error_code,
            NEW.updated_at, NEW.updated_at);
END;
