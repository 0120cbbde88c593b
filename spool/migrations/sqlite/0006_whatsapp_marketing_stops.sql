-- smsgw schema 6: a customer's "stop marketing messages" on WhatsApp (Meta's
-- user_preferences webhook, or error 131050) is a blacklist entry with a
-- scope. scope '' is the list as it was: every message of the campaign (0:
-- all). 'whatsapp_marketing:<channel>' holds back only WhatsApp marketing
-- templates sent through that channel (the business number the customer
-- stopped); SMS, utility and authentication messages still go, and a
-- "resume" lifts that entry alone. created_at is when the customer stopped
-- (Meta's time), so a late "resume" older than a newer stop lifts nothing.
-- The primary key gains the scope: SQLite rebuilds the table.

CREATE TABLE blacklist_scoped (
    destination TEXT NOT NULL,
    campaign    INTEGER NOT NULL DEFAULT 0,
    scope       TEXT NOT NULL DEFAULT '',
    note        TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (destination, campaign, scope)
) WITHOUT ROWID;

INSERT INTO blacklist_scoped (destination, campaign, note, created_at)
    SELECT destination, campaign, note, created_at FROM blacklist;

DROP TABLE blacklist;

ALTER TABLE blacklist_scoped RENAME TO blacklist;

-- As in schema 4, but only for entries that stop every message: a marketing
-- stop must not end a journey whose SMS reminders may still go.
CREATE TRIGGER tr_journey_blacklisted AFTER INSERT ON blacklist
WHEN NEW.scope = ''
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

-- A blocked step ends its journey; the note now says why it was blocked.
DROP TRIGGER tr_journey_blocked;
CREATE TRIGGER tr_journey_blocked AFTER UPDATE OF state ON sms_spool
WHEN NEW.journey_id IS NOT NULL AND NEW.state = 3 AND OLD.state != 3
BEGIN
    UPDATE journeys SET state = 'CANCELLED', next_at = NULL, updated_at = NEW.updated_at,
                        note = coalesce(NEW.error, 'destination is on the blacklist')
    WHERE id = NEW.journey_id AND state IN ('ACTIVE', 'ESCALATED');
END;

-- Meta refused a message with 131050 ("this recipient has chosen to stop
-- receiving marketing messages"): the same stop as the webhook's, on the
-- number we dialled (Meta's wa_id may differ from it) and that channel.
CREATE TRIGGER tr_whatsapp_marketing_stopped AFTER UPDATE OF state ON sms_spool
WHEN NEW.kind = 'whatsapp' AND NEW.state = 6 AND OLD.state != 6
 AND NEW.error_code = '131050' AND NEW.channel IS NOT NULL
BEGIN
    INSERT INTO blacklist (destination, campaign, scope, note, created_at)
    VALUES (NEW.destination, 0, 'whatsapp_marketing:' || NEW.channel,
            'WhatsApp 131050: customer stopped marketing messages', NEW.updated_at)
    ON CONFLICT (destination, campaign, scope) DO UPDATE
        SET created_at = max(created_at, excluded.created_at);
END;
