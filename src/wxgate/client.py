"""Deprecated: the SDK moved to `wxgate.sdk` (GatewayClient, AsyncGatewayClient). This alias
keeps `from wxgate.client import Client` working for one release, with a DeprecationWarning."""

from __future__ import annotations

import warnings

from wxgate.sdk import (
    AsyncGatewayClient,
    BatchOptions,
    GatewayClient,
    GatewayError,
    GatewayUnreachable,
    SendOptions,
    verify_webhook,
)

warnings.warn(
    "wxgate.client is deprecated: import GatewayClient / AsyncGatewayClient from wxgate.sdk "
    "(Client and AsyncClient are their old names)",
    DeprecationWarning,
    stacklevel=2,
)

Client = GatewayClient
AsyncClient = AsyncGatewayClient

__all__ = [
    "AsyncClient",
    "BatchOptions",
    "Client",
    "GatewayError",
    "GatewayUnreachable",
    "SendOptions",
    "verify_webhook",
]
