"""`python -m agent dev|start|console`: the framework's own CLI, after our start-up checks.

Every missing or malformed setting (the agent's Deepgram, OpenAI and Cartesia keys among them)
stops the worker here with one line per variable, before anything connects anywhere.
"""

from __future__ import annotations

import sys

from core.settings import SettingsError


def main() -> None:
    from agent.config import process_config

    try:
        cfg = process_config()
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None

    from livekit.agents import cli

    from agent.worker import build_server

    cli.run_app(build_server(cfg))


if __name__ == "__main__":
    main()
