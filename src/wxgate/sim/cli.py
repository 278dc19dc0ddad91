"""`wxgate sim`: run the simulator until SIGINT/SIGTERM (registered by the lead's CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import msgspec
import typer

from wxgate.sim.config import Faults, SimApp, SimConfig, load_config
from wxgate.sim.runner import Simulator


def _parse_app(spec: str) -> tuple[str, str]:
    appid, sep, secret = spec.partition(":")
    if not sep or not appid or not secret:
        raise typer.BadParameter(f"--app wants APPID:SECRET, got {spec.split(':')[0]!r}:...")
    return appid, secret


def build_config(
    *,
    config_file: Path | None,
    host: str | None,
    port: int | None,
    apps: list[str],
    callback_url: str | None,
    callback_token: str | None,
    aes_key: str | None,
    original_id: str | None,
    latency_ms: float | None,
    tls: bool,
) -> SimConfig:
    """The file first, then the command line on top of it."""
    cfg = load_config(config_file) if config_file is not None else SimConfig()
    if host is not None:
        cfg.host = host
    if port is not None:
        cfg.port = port
    if tls:
        cfg.tls = True
    if apps:
        cfg.apps = [SimApp(appid=a, secret=s) for a, s in map(_parse_app, apps)]
    overrides = {
        "callback_url": callback_url,
        "callback_token": callback_token,
        "encoding_aes_key": aes_key,
        "original_id": original_id,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        cfg.apps = [msgspec.structs.replace(a, **overrides) for a in cfg.apps]
    if latency_ms is not None:
        cfg.faults = msgspec.structs.replace(cfg.faults, latency_ms=latency_ms)
    msgspec.convert(msgspec.to_builtins(cfg), SimConfig)  # one validation of the merged result
    msgspec.convert(msgspec.to_builtins(cfg.faults), Faults)
    return cfg


async def serve(config: SimConfig) -> None:
    sim = Simulator(config)
    await sim.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    apps = ", ".join(
        f"{a.appid}" + (f" -> {a.callback_url}" if a.callback_url else "") for a in config.apps
    )
    ca = f" ca={sim.ca_file}" if sim.ca_file is not None else ""
    print(f"wxgate sim listening on {sim.base_url} apps: {apps}{ca}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.close()


def run(config: SimConfig) -> None:
    """Run with uvloop when it is installed (it roughly doubles requests/s here)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(config))
    else:
        uvloop.run(serve(config))


def sim_command(
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default 127.0.0.1, or the file's)."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Port to listen on (default 9100, or the file's; 0 = any free)."
    ),
    app: list[str] = typer.Option(  # noqa: B008 (typer's idiom)
        [], "--app", help="APPID:SECRET, repeatable. Default wx_sandbox:sandbox_secret."
    ),
    callback_url: str | None = typer.Option(
        None, "--callback-url", help="Where receipts (TEMPLATESENDJOBFINISH) are posted."
    ),
    callback_token: str | None = typer.Option(
        None, "--callback-token", help="Token that signs the receipts."
    ),
    aes_key: str | None = typer.Option(
        None, "--aes-key", help="43-char EncodingAESKey: receipts in AES safe mode."
    ),
    original_id: str | None = typer.Option(
        None, "--original-id", help="gh_... id used as ToUserName in receipts."
    ),
    latency_ms: float | None = typer.Option(
        None, "--latency-ms", help="Added to every API answer."
    ),
    tls: bool = typer.Option(False, "--tls", help="Serve HTTPS with a CA generated at start."),
    config: Path | None = typer.Option(  # noqa: B008
        None, "--config", help="TOML file with SimConfig keys; flags override it."
    ),
) -> None:
    """Run the WeChat API simulator (api.weixin.qq.com look-alike) for tests and benchmarks."""
    try:
        cfg = build_config(
            config_file=config,
            host=host,
            port=port,
            apps=app,
            callback_url=callback_url,
            callback_token=callback_token,
            aes_key=aes_key,
            original_id=original_id,
            latency_ms=latency_ms,
            tls=tls,
        )
    except (OSError, ValueError, msgspec.ValidationError) as exc:
        raise typer.BadParameter(str(exc)) from None
    run(cfg)
