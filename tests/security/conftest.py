"""The attack suite (issue 11): every finding of the security review, replayed against the real
gateway. It reuses the API helpers (tests/api/api_support.py) and the end-to-end rig
(tests/e2e/e2e_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parent.parent
for _dir in ("api", "e2e", "store"):
    _path = str(_TESTS / _dir)
    if _path not in sys.path:
        sys.path.insert(0, _path)
