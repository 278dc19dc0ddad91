"""These tests drive the real gateway and simulator with the end-to-end helpers
(tests/e2e/e2e_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_E2E = str(Path(__file__).resolve().parent.parent / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)
