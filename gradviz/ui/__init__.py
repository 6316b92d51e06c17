"""The desktop app (Qt only)."""
