"""The HTTP API: legacy form door, JSON API, health, OpenAPI."""
