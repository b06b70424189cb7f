"""The asgi-jwt-session demo app: ``python -m demo`` (or ``make demo``)."""
