-- smsgw schema 11: an idempotency key names one request. The hash of what
-- the client asked for under it is kept, so a second request under the same
-- key with a different body is refused (409) instead of answered with the
-- first one's id. Rows stored before have none and match any retry.

ALTER TABLE sms_spool ADD COLUMN request_fingerprint text;
