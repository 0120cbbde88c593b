"""SMS helpers shared by every SMS driver (modem, gateway, provider)."""
