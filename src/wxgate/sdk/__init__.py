"""The gateway's own Python SDK: GatewayClient (sync, stdlib http.client) and
AsyncGatewayClient (aiohttp), one API, plus verify_webhook for status webhooks.

    with GatewayClient("http://127.0.0.1:8080", api_key) as gw:
        accepted = gw.send("o_user", "tpl_order", {"first": "Paid", "amount": "12.50"})
        gw.wait_for(accepted.id)
"""

from wxgate.sdk.async_client import AsyncGatewayClient
from wxgate.sdk.errors import GatewayError, GatewayUnreachable
from wxgate.sdk.protocol import BatchOptions, SendOptions
from wxgate.sdk.sync_client import GatewayClient
from wxgate.sdk.webhooks import verify_webhook

__all__ = [
    "AsyncGatewayClient",
    "BatchOptions",
    "GatewayClient",
    "GatewayError",
    "GatewayUnreachable",
    "SendOptions",
    "verify_webhook",
]
