"""`python -m devstack.livekit`: run the LiveKit emulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from core.log import get_logger, setup_logging

from .config import DEFAULT_PORT, DEFAULT_WEBHOOK_URL, ConfigError, EmulatorConfig
from .server import start_emulator

log = get_logger("devstack.livekit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m devstack.livekit",
        description=(
            "LiveKit server emulator: Twirp RoomService/Egress/AgentDispatchService with "
            "LiveKit's JWT checks, signed webhooks, Ogg/Opus recordings, a control API under "
            "/_emulator/ and fault injection. No WebRTC. State is in memory: a restart ends "
            "every room. The API key and secret come from LIVEKIT_API_KEY and "
            "LIVEKIT_API_SECRET (never from the command line)."
        ),
        epilog="Flags override the environment variables named in brackets.",
    )
    p.add_argument("--host", help="address to bind [LIVEKIT_EMULATOR_HOST, default 127.0.0.1]")
    p.add_argument(
        "--port",
        type=int,
        help=f"port, 0 = any free [LIVEKIT_EMULATOR_PORT, default {DEFAULT_PORT}]",
    )
    p.add_argument(
        "--webhook-url",
        help=f"where webhooks go, '' disables [LIVEKIT_WEBHOOK_URL, default {DEFAULT_WEBHOOK_URL}]",
    )
    p.add_argument(
        "--public-url", help="base URL of recording locations [LIVEKIT_EMULATOR_PUBLIC_URL]"
    )
    p.add_argument(
        "--auto-agent",
        choices=["true", "false"],
        help="join a stand-in agent on dispatch [LIVEKIT_EMULATOR_AUTO_AGENT, default true]",
    )
    p.add_argument(
        "--auto-agent-delay",
        type=float,
        help="seconds before the stand-in agent joins [LIVEKIT_EMULATOR_AUTO_AGENT_DELAY, 0.5]",
    )
    p.add_argument(
        "--recordings-dir",
        help="keep recordings here [LIVEKIT_EMULATOR_RECORDINGS_DIR, default a temp dir]",
    )
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, ... [LOG_LEVEL, default INFO]")
    return p.parse_args(argv)


async def serve(config: EmulatorConfig) -> None:
    handle = await start_emulator(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await handle.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    overrides: dict[str, object] = {
        "host": args.host,
        "port": args.port,
        "webhook_url": args.webhook_url,
        "public_url": args.public_url,
        "auto_agent": None if args.auto_agent is None else args.auto_agent == "true",
        "auto_agent_delay_s": args.auto_agent_delay,
        "recordings_dir": args.recordings_dir,
    }
    try:
        config = EmulatorConfig.from_env(None, **overrides)
    except ConfigError as e:
        print(f"livekit emulator: {e}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except OSError as e:
        print(
            f"livekit emulator: cannot listen on {config.host}:{config.port}: {e}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
