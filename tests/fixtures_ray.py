"""Fixtures for the real ray component (filled in by its owner)."""
