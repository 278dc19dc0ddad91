"""Delivery: one message through limiter, breaker, token, client and store; the worker pool."""
