-- smsgw schema 6 (PostgreSQL): a customer's "stop marketing messages" on
-- WhatsApp (Meta's user_preferences webhook, or error 131050) is a blacklist
-- entry with a scope. scope '' is the list as it was: every message of the
-- campaign (0: all). 'whatsapp_marketing:<channel>' holds back only WhatsApp
-- marketing templates sent through that channel (the business number the
-- customer stopped); SMS, utility and authentication messages still go, and
-- a "resume" lifts that entry alone. created_at is when the customer stopped
-- (Meta's time), so a late "resume" older than a newer stop lifts nothing.

ALTER TABLE blacklist ADD COLUMN scope text NOT NULL DEFAULT '';
ALTER TABLE blacklist DROP CONSTRAINT blacklist_pkey;
ALTER TABLE blacklist ADD PRIMARY KEY (destination, campaign, scope);

-- As in schema 4, but only for entries that stop every message: a marketing
-- stop must not end a journey whose SMS reminders may still go.
DROP TRIGGER tr_journey_blacklisted ON blacklist;
CREATE TRIGGER tr_journey_blacklisted AFTER INSERT ON blacklist FOR EACH ROW
    WHEN (NEW.scope = '')
    EXECUTE FUNCTION journey_blacklisted();

-- A blocked step ends its journey; the note now says why it was blocked.
CREATE OR REPLACE FUNCTION journey_blocked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE journeys SET state = 'CANCELLED', next_at = NULL, updated_at = NEW.updated_at,
                        note = coalesce(NEW.error, 'destination is on the blacklist')
    WHERE id = NEW.journey_id AND state IN ('ACTIVE', 'ESCALATED');
    RETURN NULL;
END $$;

-- Meta refused a message with 131050 ("this recipient has chosen to stop
-- receiving marketing messages"): the same stop as the webhook's, on the
-- number we dialled (Meta's wa_id may differ from it) and that channel.
CREATE FUNCTION whatsapp_marketing_stopped() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO blacklist (destination, campaign, scope, note, created_at)
    VALUES (NEW.destination, 0, 'whatsapp_marketing:' || NEW.channel,
            'WhatsApp 131050: customer stopped marketing messages', NEW.updated_at)
    ON CONFLICT (destination, campaign, scope) DO UPDATE
        SET created_at = greatest(blacklist.created_at, excluded.created_at);
    RETURN NULL;
END $$;
CREATE TRIGGER tr_whatsapp_marketing_stopped AFTER UPDATE OF state ON sms_spool FOR EACH ROW
    WHEN (NEW.kind = 'whatsapp' AND NEW.state = 6 AND OLD.state <> 6
          AND NEW.error_code = '131050' AND NEW.channel IS NOT NULL)
    EXECUTE FUNCTION whatsapp_marketing_stopped();
