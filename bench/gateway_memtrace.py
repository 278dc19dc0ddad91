"""Diagnosis for P6: `wxgate serve` that reports which Python object types keep growing.

    python bench/gateway_memtrace.py OUT.txt serve --config FILE --role all

Every 10 s (after a 10 s warm-up baseline) OUT.txt gets a block with RSS and the 20 object
types whose live count grew most since the baseline (gc.get_objects: cheap enough under load),
sys.getallocatedblocks() (small Python allocations, gc-tracked or not), and with
WXB_TRACEMALLOC=1 the memory tracemalloc traces (every Python allocation, one frame deep) and
the source lines whose traced memory grew most. RSS that grows while all of these stay flat
is memory allocated outside Python (SQLite, the event loop, the C allocator).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc
from collections import Counter, deque


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _counts() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in gc.get_objects())


_CONTAINERS = (dict, set, list, deque, bytearray)


def _big_containers(min_len: int = 500) -> dict[int, tuple[int, str]]:
    """Large containers by id: (len, a short description). gc does not see strs and bytes,
    so a dict or set of ids that grows per message shows up here, not in the type counts."""
    out: dict[int, tuple[int, str]] = {}
    for o in gc.get_objects():
        if isinstance(o, _CONTAINERS):
            try:
                n = len(o)
            except TypeError:
                continue
            if n >= min_len:
                sample = next(iter(o), None) if not isinstance(o, bytearray) else None
                item = repr(sample)[:80]
                if isinstance(o, dict) and sample is not None:
                    item += f" -> {repr(o[sample])[:80]}"
                out[id(o)] = (n, f"{type(o).__name__} e.g. {item}")
    return out


def _watch(out: str) -> None:
    time.sleep(10)
    base, t0, rss0 = _counts(), time.monotonic(), _rss_mb()
    blocks0 = sys.getallocatedblocks()  # every live Python allocation, gc-tracked or not
    traced = tracemalloc.is_tracing()
    snap0 = tracemalloc.take_snapshot() if traced else None
    traced0 = tracemalloc.get_traced_memory()[0] if traced else 0
    big0 = _big_containers()
    while True:
        time.sleep(10)
        now = _counts()
        big = _big_containers()
        growing = sorted(
            ((n - big0.get(i, (0, ""))[0], n, desc) for i, (n, desc) in big.items()),
            reverse=True,
        )[:8]
        grown = sorted(((now[k] - base.get(k, 0), k) for k in now), reverse=True)[:20]
        lines = [
            f"t={time.monotonic() - t0:.0f}s rss={_rss_mb():.1f} MB (baseline {rss0:.1f} MB), "
            f"gc objects {sum(now.values()):,} (baseline {sum(base.values()):,}), "
            f"allocated blocks {sys.getallocatedblocks():,} (baseline {blocks0:,})"
        ]
        if snap0 is not None:
            cur = tracemalloc.get_traced_memory()[0]
            lines.append(
                f"  traced by tracemalloc: {cur / 2**20:.1f} MB (baseline {traced0 / 2**20:.1f} MB)"
            )
            for st in tracemalloc.take_snapshot().compare_to(snap0, "lineno")[:8]:
                lines.append(f"  {st.size_diff / 1024:+10.1f} KiB  {st.traceback[0]}")
        lines += [f"  {d:+9,d}  {k}" for d, k in grown if d > 0]
        lines += [f"  container {n:,} items ({d:+,d}): {desc}" for d, n, desc in growing if d > 0]
        with open(out, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    out_file = sys.argv.pop(1)
    if os.environ.get("WXB_TRACEMALLOC") == "1":
        tracemalloc.start(1)
    threading.Thread(target=_watch, args=(out_file,), daemon=True).start()
    from wxgate.cli import main

    main()
