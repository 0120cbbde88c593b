"""Twilio Programmable Messaging: REST sends, signed status and inbound webhooks."""
