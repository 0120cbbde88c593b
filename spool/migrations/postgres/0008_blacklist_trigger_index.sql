-- smsgw schema 8 (PostgreSQL): adding a number to the blacklist no longer
-- looks for the number's journeys without an index. A journey's steps go to
-- the journey's own number: its pending steps are the number's spool rows
-- that belong to a journey, found through ix_spool_destination.

CREATE OR REPLACE FUNCTION journey_blacklisted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE journeys SET state = 'CANCELLED', next_at = NULL, updated_at = NEW.created_at,
                        note = 'destination was blacklisted'
    WHERE destination = NEW.destination AND state IN ('ACTIVE', 'ESCALATED')
      AND (NEW.campaign = 0 OR campaign = NEW.campaign);
    UPDATE sms_spool SET state = 3, note = 'destination was blacklisted',
                         error = 'destination is on the blacklist', updated_at = NEW.created_at
    WHERE destination = NEW.destination AND journey_id IS NOT NULL AND state IN (0, 1)
      AND (NEW.campaign = 0 OR campaign = NEW.campaign);
    RETURN NULL;
END $$;
