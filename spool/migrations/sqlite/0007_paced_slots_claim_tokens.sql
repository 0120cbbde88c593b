-- smsgw schema 7: a paced campaign's pace holds across every daemon on the
-- spool, and a claim whose answer was lost can be found again.
--
-- last_slot_at: when the campaign last took a paced slot. A paced claim
-- takes the next slot (last_slot_at + time_between_ms) in its own
-- transaction, so the gap holds however many daemons claim; kept as the
-- last slot rather than the next one so that a changed time_between_ms
-- counts from the next claim on.
ALTER TABLE campaigns ADD COLUMN last_slot_at REAL NOT NULL DEFAULT 0;

-- claim_token: the random token of the claim that last took the row. A
-- claim that raised may still have committed (PostgreSQL: the connection
-- broke after the COMMIT); its daemon returns the rows it never received,
-- found by this token, to the queue.
ALTER TABLE sms_spool ADD COLUMN claim_token INTEGER;
