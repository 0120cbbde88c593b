-- smsgw schema 7 (PostgreSQL): a paced campaign's pace holds across every
-- daemon on the spool, and a claim whose answer was lost can be found again.
--
-- last_slot_at: when the campaign last took a paced slot. A paced claim
-- locks the campaign's row and takes the next slot (last_slot_at +
-- time_between_ms) in the same statement as the message, so the gap holds
-- however many daemons claim; kept as the last slot rather than the next
-- one so that a changed time_between_ms counts from the next claim on.
ALTER TABLE campaigns ADD COLUMN last_slot_at double precision NOT NULL DEFAULT 0;

-- claim_token: the random token of the claim that last took the row. A
-- claim whose connection broke after the server committed it leaves rows
-- leased to a daemon that never received them; that daemon returns them to
-- the queue by this token. Only rows in state 2 are ever looked up by it
-- (through ix_spool_leases): no index of its own.
ALTER TABLE sms_spool ADD COLUMN claim_token bigint;
