"""Metrics on decoded or enhanced frames, BD-rate, and aggregation helpers."""
