"""The generic HTTP provider driver (`driver = "http"`) and what every
HTTP-speaking driver shares (`common`, `simkit`)."""
