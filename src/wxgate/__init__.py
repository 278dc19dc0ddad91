"""wxgate: a fast, durable push gateway for WeChat template and subscribe messages."""

__version__ = "0.1.0"
