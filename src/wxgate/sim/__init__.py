"""The WeChat API simulator (docs/architecture.md §10), written from docs/wechat-api.md alone.

It shares no protocol code with wxgate.wechat, so a misreading of WeChat cannot hide on
both sides; only the signature and AES primitives of wxgate.wechat.crypto are reused.
"""

from wxgate.sim.config import Faults, SimApp, SimConfig
from wxgate.sim.runner import Simulator

__all__ = ["Faults", "SimApp", "SimConfig", "Simulator"]
