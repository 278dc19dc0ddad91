"""Shared fixtures and helpers of the test suite, imported as `support.<module>` (pyproject sets
pythonpath = ["tests"])."""
