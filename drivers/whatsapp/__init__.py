"""WhatsApp Business Cloud API (Meta): templates, session messages, signed webhooks."""
