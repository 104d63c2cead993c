"""Fixtures for the real kafka component (filled in by its owner)."""
