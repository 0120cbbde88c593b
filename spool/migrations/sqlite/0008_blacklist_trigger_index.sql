-- smsgw schema 8: adding a number to the blacklist no longer reads the whole
-- journeys table. The trigger found the pending steps of the number's
-- journeys through `journey_id IN (SELECT id FROM journeys WHERE
-- destination = ...)`, which no index serves (ix_journeys_destination only
-- covers journeys still waiting, and by then they are CANCELLED), so every
-- number of a DNCR upload scanned every journey. A journey's steps go to the
-- journey's own number: the steps are the number's spool rows that belong to
-- a journey, found through ix_spool_destination.

DROP TRIGGER tr_journey_blacklisted;
CREATE TRIGGER tr_journey_blacklisted AFTER INSERT ON blacklist
WHEN NEW.scope = ''
BEGIN
    UPDATE journeys SET state = 'CANCELLED', next_at = NULL, updated_at = NEW.created_at,
                        note = 'destination was blacklisted'
    WHERE destination = NEW.destination AND state IN ('ACTIVE', 'ESCALATED')
      AND (NEW.campaign = 0 OR campaign = NEW.campaign);
    UPDATE sms_spool SET state = 3, note = 'destination was blacklisted',
                         error = 'destination is on the blacklist', updated_at = NEW.created_at
    WHERE destination = NEW.destination AND journey_id IS NOT NULL AND state IN (0, 1)
      AND (NEW.campaign = 0 OR campaign = NEW.campaign);
END;
