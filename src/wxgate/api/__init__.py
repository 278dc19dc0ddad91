"""The HTTP API (aiohttp): routes, auth, error mapping, OpenAPI and the dashboard."""
