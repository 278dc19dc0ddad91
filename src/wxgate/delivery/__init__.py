"""Delivery: one message through limiter, breaker, token, client and store; the worker pool."""

from wxgate.delivery.hooks import DeliveryMetrics, NoMetrics
from wxgate.delivery.outcome import Outcome

__all__ = ["DeliveryMetrics", "NoMetrics", "Outcome"]
