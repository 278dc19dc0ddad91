"""P4: `wxgate serve` with WeChatClient(pooled=False): a new connection per request, same code.

The gateway has no setting for it (the unpooled mode exists only as the benchmark's baseline),
so this launcher swaps the class the runtime builds its client from and runs the normal CLI:
    python bench/gateway_unpooled.py serve --config FILE --role worker
"""

from __future__ import annotations

import functools

import wxgate.runtime as runtime
from wxgate.wechat.client import WeChatClient

runtime.WeChatClient = functools.partial(WeChatClient, pooled=False)  # type: ignore[misc]

if __name__ == "__main__":
    from wxgate.cli import main

    main()
