"""Everything that speaks to WeChat: sans-IO protocol, pooled client, token broker, callbacks."""
