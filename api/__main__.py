"""`python -m api`: run the API with the settings from the environment / .devstack/env."""

from __future__ import annotations

from core.log import setup_logging
from core.settings import settings_or_exit
from core.telemetry import setup_tracing

from .app import create_app
from .wsproto import OptionalSubprotocolWebSocketProtocol


def main() -> None:
    setup_logging()
    settings = settings_or_exit()
    setup_tracing("callcenter-api")  # off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = create_app(settings)
    app.run(
        host=settings.API_HOST,
        port=settings.API_PORT,
        single_process=True,
        access_log=False,
        protocol=OptionalSubprotocolWebSocketProtocol,
    )


if __name__ == "__main__":
    from core.temporal import exit_process

    main()
    exit_process(0)
