-- smsgw schema 10: a customer's reply is attributed through the channel it
-- came in on (the business number, port or WhatsApp number the customer
-- wrote to): the last message that went out to that customer on that
-- channel. One index probe per inbound message, whatever the spool's size.

CREATE INDEX ix_spool_reply ON sms_spool (destination, channel, id) WHERE sent_at IS NOT NULL;
