"""Fixtures for the real feast component (filled in by its owner)."""
