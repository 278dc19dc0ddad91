"""Pure decision logic with no I/O: errcode dispositions, backoff, rate limits, breaker."""
